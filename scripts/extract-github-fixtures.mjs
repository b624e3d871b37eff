// Copies the recorded payloads the GitHub tests use out of @octokit/webhooks-examples and the REST
// response examples out of @octokit/openapi (devDependencies) into test/fixtures/github/, so tests
// never read node_modules' 400 MB description. Run: node scripts/extract-github-fixtures.mjs
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';

const require = createRequire(import.meta.url);
const out = join(import.meta.dirname, '..', 'test', 'fixtures', 'github');
const hooks = require('@octokit/webhooks-examples/api.github.com/index.json');
const pick = (name, i) => hooks.find((e) => e.name === name).examples[i];
const webhooks = {
  'check_run.created': ['check_run', 0],
  'check_suite.completed.no-pr': ['check_suite', 1],
  'pull_request.reopened': ['pull_request', 18],
  'pull_request.synchronize': ['pull_request', 22],
  'pull_request_review_comment.created': ['pull_request_review_comment', 0],
};
for (const [file, [name, i]] of Object.entries(webhooks)) writeFileSync(join(out, `${file}.json`), `${JSON.stringify(pick(name, i), null, 2)}\n`);

const spec = JSON.parse(readFileSync(require.resolve('@octokit/openapi/generated/api.github.com.deref.json'), 'utf8'));
const rest = {
  'pulls.get': ['/repos/{owner}/{repo}/pulls/{pull_number}', 'get', '200'],
  'pulls.create': ['/repos/{owner}/{repo}/pulls', 'post', '201'],
  'pulls.list': ['/repos/{owner}/{repo}/pulls', 'get', '200'],
  'pulls.listReviews': ['/repos/{owner}/{repo}/pulls/{pull_number}/reviews', 'get', '200'],
  'checks.listForRef': ['/repos/{owner}/{repo}/commits/{ref}/check-runs', 'get', '200'],
  'repos.getCombinedStatusForRef': ['/repos/{owner}/{repo}/commits/{ref}/status', 'get', '200'],
  'checks.listAnnotations': ['/repos/{owner}/{repo}/check-runs/{check_run_id}/annotations', 'get', '200'],
  'pulls.listReviewComments': ['/repos/{owner}/{repo}/pulls/{pull_number}/comments', 'get', '200'],
  'issues.listComments': ['/repos/{owner}/{repo}/issues/{issue_number}/comments', 'get', '200'],
};
for (const [file, [path, method, status]] of Object.entries(rest)) {
  const content = spec.paths[path][method].responses[status].content['application/json'];
  const example = Object.values(content.examples)[0].value;
  writeFileSync(join(out, 'rest', `${file}.json`), `${JSON.stringify(example, null, 2)}\n`);
}
