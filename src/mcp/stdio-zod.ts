// Imported first by the agentpr-mcp bin (stdio-main.ts), before any zod schema exists.
//
// zod compiles a checking function (new Function) for each object schema the first time it
// checks a value, which pays off only when a schema checks many values. The stdio server checks a
// handful per request and starts cold for each client session, so compiling costs it more than it
// saves (about a tenth of a cold start: the policy defaults read at start-up, the protocol's
// request schemas): it checks values by walking the schema instead. The setting is read when a
// schema is built, so this module must run before any module that builds one. Everything else
// (the CLI, `agentpr serve`, the webhook receiver) keeps zod's default.
import { config } from 'zod';

config({ jitless: true });
