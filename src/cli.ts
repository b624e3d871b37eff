#!/usr/bin/env node
// The `agentpr` bin.
import { main } from './cli-main.js';

const code = await main(process.argv.slice(2));
process.exitCode = code;
