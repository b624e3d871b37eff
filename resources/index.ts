import type { ResourceDefinition } from '../src/resources.js';
import { runsResource, runResource, runEventsResource } from './runs.js';
import { policyResource } from './policy.js';
import { DIGEST_RESOURCES } from './digest.js';
import { boardResource, boardRunResource } from './board.js';
import { runIterationResource } from './iteration.js';

/** The one list of MCP resources; append new ones here. */
export const RESOURCES: readonly ResourceDefinition[] = [runsResource, runResource, runEventsResource, policyResource, ...DIGEST_RESOURCES, runIterationResource, boardResource, boardRunResource];
