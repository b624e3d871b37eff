import { defineResource } from '../src/resources.js';

export const policyResource = defineResource({
  name: 'policy',
  title: 'Manager policy',
  description: 'The effective manager policy: built-in defaults merged with the policy file, and the file it came from.',
  mimeType: 'application/json',
  uri: 'agentpr://policy',
  template: false,
  read: (app) => ({
    mimeType: 'application/json',
    text: JSON.stringify({ source: app.policySource ?? 'built-in defaults', policy: app.policy }, null, 2),
  }),
});
