import type { App } from './app.js';

export interface ResourceListing {
  uri: string;
  name: string;
  title?: string;
  description?: string;
  mimeType?: string;
}

export interface ResourceContent {
  text: string;
  mimeType: string;
}

/**
 * An MCP resource, defined once. `uri` is either a fixed URI or an RFC 6570 template such as
 * `agentpr://runs/{run_id}`; templates list their concrete resources through `list`.
 */
export interface ResourceDefinition {
  name: string;
  title: string;
  description: string;
  mimeType: string;
  uri: string;
  template: boolean;
  list?: (app: App) => ResourceListing[];
  /**
   * vars: the template variables (and query parameters) of the requested URI. A promise when the
   * resource imports what it reads with on first use (kept off agentpr-mcp's start-up).
   */
  read: (app: App, uri: URL, vars: Record<string, string>) => ResourceContent | Promise<ResourceContent>;
}

export function defineResource(def: ResourceDefinition): ResourceDefinition {
  return def;
}
