import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { makeTestApp } from '../helpers/app.js';
import { startHttpServer, type RunningHttpServer } from '../../src/mcp/http.js';
import { Registry } from '../../src/registry.js';
import { TOOLS } from '../../tools/index.js';
import type { App } from '../../src/app.js';
import type { BoardSnapshot, RunPage } from '../../src/board/model.js';

const TOKEN = 'board-test-token-3f9a';

let app: App;
let cleanup: () => Promise<void>;
let guarded: RunningHttpServer;
let readOnly: RunningHttpServer;
let base: string;
const registry = new Registry(TOOLS);

async function call(name: string, args: Record<string, unknown>): Promise<Record<string, unknown>> {
  const r = await registry.call(name, args, { app, entry: 'cli', actor: 'test', skipDoctor: true });
  if (!r.ok) throw new Error(r.error);
  return r.data;
}

const bearer = { authorization: `Bearer ${TOKEN}` };

beforeAll(async () => {
  ({ app, cleanup } = makeTestApp());
  guarded = await startHttpServer({ app, port: 0, token: TOKEN });
  readOnly = await startHttpServer({ app, port: 0, token: TOKEN, readOnly: true });
  base = guarded.url.replace(/\/mcp$/, '');
});
afterAll(async () => {
  await guarded.close();
  await readOnly.close();
  await cleanup();
});

describe('the board over HTTP: the same token as /mcp', () => {
  test('without a token: the page answers 401 with a sign-in form, the API 401 JSON; a wrong bearer is refused too', async () => {
    const page = await fetch(`${base}/`);
    expect(page.status).toBe(401);
    expect(page.headers.get('www-authenticate')).toBe('Bearer');
    const html = await page.text();
    expect(html).toContain('<form method="post" action="/board/login">');
    expect(html).not.toContain('agentpr://board');

    for (const path of ['/board/api/board', '/board/events', '/board/api/runs/run_000000000000']) {
      const r = await fetch(`${base}${path}`);
      expect(r.status, path).toBe(401);
      expect(((await r.json()) as { error: string }).error).toMatch(/sign in at \/ or send Authorization: Bearer/);
    }
    const wrong = await fetch(`${base}/board/api/board`, { headers: { authorization: 'Bearer nope' } });
    expect(wrong.status).toBe(401);
    const post = await fetch(`${base}/board/api/tools/pause`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect(post.status).toBe(401);
  });

  test('sign-in: a wrong token gets the form again; the right one an HttpOnly SameSite cookie that is not the token', async () => {
    const wrong = await fetch(`${base}/board/login`, { method: 'POST', body: new URLSearchParams({ token: 'guess' }), redirect: 'manual' });
    expect(wrong.status).toBe(401);
    expect(wrong.headers.get('set-cookie')).toBeNull();
    expect(await wrong.text()).toContain('not the one this server was started with');

    const ok = await fetch(`${base}/board/login`, { method: 'POST', body: new URLSearchParams({ token: TOKEN }), redirect: 'manual' });
    expect(ok.status).toBe(303);
    expect(ok.headers.get('location')).toBe('/');
    const cookie = ok.headers.get('set-cookie') ?? '';
    expect(cookie).toMatch(/^agentpr_board=[A-Za-z0-9_-]{20,};/);
    expect(cookie).toContain('HttpOnly');
    expect(cookie).toContain('SameSite=Strict');
    expect(cookie).not.toContain(TOKEN);
    const pair = cookie.split(';')[0]!;

    const page = await fetch(`${base}/`, { headers: { cookie: pair } });
    expect(page.status).toBe(200);
    const csp = page.headers.get('content-security-policy') ?? '';
    const nonce = /'nonce-([^']+)'/.exec(csp)?.[1];
    expect(nonce).toBeTruthy();
    expect(csp).toContain("default-src 'none'");
    const html = await page.text();
    expect(html).toContain(`<script nonce="${nonce}">`);
    // Self-contained: nothing loaded from elsewhere.
    expect(html).not.toMatch(/<(script|link|img)[^>]+(src|href)="(https?:)?\/\//i);

    // A forged cookie is not a session.
    expect((await fetch(`${base}/board/api/board`, { headers: { cookie: 'agentpr_board=forged' } })).status).toBe(401);
    expect((await fetch(`${base}/board/api/board`, { headers: { cookie: pair } })).status).toBe(200);
  });
});

describe('board data and actions', () => {
  test('cards sit in the columns of their states; a run page carries timeline, attempts and figures', async () => {
    const queued = (await call('create-run', { owner: 'acme', repo: 'widgets' })) as { run: { run_id: string } };
    const working = (await call('create-run', { owner: 'acme', repo: 'gadgets' })) as { run: { run_id: string } };
    await call('start-discovery', { run_id: working.run.run_id });

    const r = await fetch(`${base}/board/api/board`, { headers: bearer });
    expect(r.status).toBe(200);
    const b = (await r.json()) as BoardSnapshot;
    expect(b.columns.map((c) => c.id)).toEqual(['queued', 'working', 'waiting', 'person', 'finished']);
    const card = (id: string) => b.cards.find((c) => c.run_id === id)!;
    expect(card(queued.run.run_id)).toMatchObject({ owner: 'acme', repo: 'widgets', state: 'QUEUED', column: 'queued', verdict: null, actions: ['pause'] });
    expect(card(working.run.run_id)).toMatchObject({ state: 'DISCOVERY', column: 'working' });

    const p = await fetch(`${base}/board/api/runs/${working.run.run_id}`, { headers: bearer });
    expect(p.status).toBe(200);
    const page = (await p.json()) as RunPage;
    expect(page.inspect.timeline.map((t) => t.summary)).toEqual(['command.run.create: created in QUEUED', 'command.start.discovery: QUEUED -> DISCOVERY']);
    expect(page.card.state_since).toBe(page.inspect.timeline[1]!.at);

    const missing = await fetch(`${base}/board/api/runs/run_0123456789ab`, { headers: bearer });
    expect(missing.status).toBe(404);
    expect(((await missing.json()) as { error: string }).error).toContain("unknown run 'run_0123456789ab'");
    const bad = await fetch(`${base}/board/api/runs/..%2Fetc`, { headers: bearer });
    expect(bad.status).toBe(400);
  });

  test('pause from the board moves the run and is pushed to an open event stream; resume goes back to the paused state', async () => {
    const run = ((await call('create-run', { owner: 'acme', repo: 'sprockets' })) as { run: { run_id: string } }).run.run_id;
    await call('start-discovery', { run_id: run });

    const changes: string[] = [];
    let buffer = '';
    const stream = await new Promise<import('node:http').IncomingMessage>((resolve, reject) => {
      const req = request(`${base}/board/events`, { headers: bearer }, resolve);
      req.on('error', reject);
      req.end();
    });
    expect(stream.statusCode).toBe(200);
    expect(stream.headers['content-type']).toBe('text/event-stream');
    stream.setEncoding('utf8');
    stream.on('data', (d: string) => {
      buffer += d;
      let i;
      while ((i = buffer.indexOf('\n\n')) >= 0) {
        const frame = buffer.slice(0, i);
        buffer = buffer.slice(i + 2);
        if (frame.includes('event: change')) changes.push(frame.split('data: ')[1] ?? '');
      }
    });

    const res = await fetch(`${base}/board/api/tools/pause`, { method: 'POST', headers: { ...bearer, 'content-type': 'application/json' }, body: JSON.stringify({ run_id: run }) });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { ok: boolean; text: string; data: { state: string } };
    expect(body).toMatchObject({ ok: true, data: { state: 'PAUSED' } });
    expect(body.text).toBe(`${run}: DISCOVERY -> PAUSED (command.pause)`);
    await expect.poll(() => changes.map((c) => JSON.parse(c) as { run_id?: string; state?: string }), { timeout: 10_000 }).toContainEqual({ run_id: run, state: 'PAUSED' });

    const b = (await (await fetch(`${base}/board/api/board`, { headers: bearer })).json()) as BoardSnapshot;
    expect(b.cards.find((c) => c.run_id === run)).toMatchObject({ column: 'person', actions: ['resume'], resume_target: 'DISCOVERY' });

    const resumed = await fetch(`${base}/board/api/tools/resume`, {
      method: 'POST',
      headers: { ...bearer, 'content-type': 'application/json' },
      body: JSON.stringify({ run_id: run, target_state: 'DISCOVERY' }),
    });
    expect(((await resumed.json()) as { data: { state: string } }).data.state).toBe('DISCOVERY');
    stream.destroy();
  });

  test('the board calls its own tools only, with JSON input; bad input changes nothing and says why', async () => {
    const run = ((await call('create-run', { owner: 'acme', repo: 'cogs' })) as { run: { run_id: string } }).run.run_id;
    const post = (tool: string, body: string, type = 'application/json', server = guarded) =>
      fetch(`${server.url.replace(/\/mcp$/, '')}/board/api/tools/${tool}`, { method: 'POST', headers: { ...bearer, 'content-type': type }, body });

    const other = await post('create-run', JSON.stringify({ owner: 'x', repo: 'y' }));
    expect(other.status).toBe(404);
    expect(((await other.json()) as { error: string }).error).toBe("the board calls pause, resume, retry, request-open-pr, approve-open-pr only; 'create-run' is not one of them");

    const form = await post('pause', `run_id=${run}`, 'application/x-www-form-urlencoded');
    expect(form.status).toBe(415);
    const notJson = await post('pause', '{run_id:');
    expect(notJson.status).toBe(400);
    expect(((await notJson.json()) as { error: string }).error).toMatch(/^the body is not JSON tool input/);
    const invalid = await post('retry', JSON.stringify({ run_id: run }));
    expect(invalid.status).toBe(400);
    expect(((await invalid.json()) as { error: string }).error).toMatch(/^invalid input for retry: target_state: '?nothing'? is not allowed; allowed: QUEUED/);
    const conflict = await post('resume', JSON.stringify({ run_id: run, target_state: 'DONE' }));
    expect(conflict.status).toBe(409);

    // Approving keeps its confirmation: without confirm: true (the board's tick) nothing happens.
    const unconfirmed = await post('approve-open-pr', JSON.stringify({ run_id: run, token: 'ABC123', confirm: false }));
    expect(unconfirmed.status).toBe(400);
    expect(((await unconfirmed.json()) as { error: string }).error).toBe('approve-open-pr opens a pull request on GitHub; pass confirm: true (--confirm) to go ahead');
    const ro = await post('pause', JSON.stringify({ run_id: run }), 'application/json', readOnly);
    expect(ro.status).toBe(403);
    expect(((await ro.json()) as { error: string }).error).toBe('pause is a write-tier tool; this caller may use read-tier tools only');

    expect(app.service.getRun(run).state).toBe('QUEUED');
    expect(app.service.listEvents(run)).toHaveLength(1);
  });

  test('other paths keep their answers: /mcp still needs the bearer, unknown board routes 404', async () => {
    expect((await fetch(`${base}/board/nothing`, { headers: bearer })).status).toBe(404);
    const mcp = await fetch(`${base}/mcp`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect(mcp.status).toBe(401);
  });
});
