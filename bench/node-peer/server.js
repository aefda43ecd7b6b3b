// The benchmark's Node peer (issue 31): the seed's inbound-call webhook
// handler as a TypeScript team runs it, written from its description and the
// seed checklist, so that bench/run.sh can set vapi-edge beside it in one run.
// One Node process; Express; Zod validation; Vapi's HMAC check; the claim as
// SET NX in Redis; then BEGIN, the agent SELECT (retried 5 times, 3.85 s in
// all), the processed-event INSERT, the call_tracking INSERT (inbound), the
// call_logs upsert, COMMIT; one structured JSON log line per request. Its four
// parameterised statements are named (prepared once per connection), as a
// Node team tuning `pg` would write them: BENCHMARKS.md ("Issue 31, first
// step") has the peer with unnamed ones beside it.
//
// Configuration (environment): PG_URL, REDIS_URL, HMAC_SECRET, LISTEN
// (host:port, port 0 for any). Prints `Serving http://ADDR` once listening.
// It answers the same JSON as vapi-edge (`{"ok": true, "outcome": ...}`), so
// the same driver (vapi-edge-bench) measures both.
'use strict';

const crypto = require('node:crypto');
const express = require('express');
const { Pool } = require('pg');
const { createClient } = require('redis');
const { z } = require('zod');

const env = (name, fallback) => {
  const value = process.env[name] ?? fallback;
  if (value === undefined || value === '') throw new Error(`${name} is not set`);
  return value;
};
const secret = env('HMAC_SECRET');
const pool = new Pool({ connectionString: env('PG_URL'), max: 16 });
const redis = createClient({ url: env('REDIS_URL', 'redis://127.0.0.1:6379') });
const [host, port] = env('LISTEN', '127.0.0.1:0').split(':');
const TOLERANCE_S = 300;
const RETRY_DELAYS_MS = [100, 250, 500, 1000, 2000];
const LEASE_MS = 30_000;
const DONE_TTL_S = 7 * 24 * 3600;

const log = (level, msg, fields) =>
  process.stdout.write(JSON.stringify({ ts: new Date().toISOString(), level, msg, ...fields }) + '\n');

// --- validation (the Zod role) ------------------------------------------------
const Number_ = z.object({ number: z.string().optional() }).passthrough();
const Call = z
  .object({
    id: z.string().min(1),
    orgId: z.string().optional(),
    type: z.string().optional(),
    assistantId: z.string().nullish(),
    phoneNumberId: z.string().nullish(),
    customer: Number_.optional(),
  })
  .passthrough();
const Message = z
  .object({
    type: z.string().min(1),
    timestamp: z.union([z.number(), z.string()]).optional(),
    status: z.string().optional(),
    endedReason: z.string().optional(),
    call: Call.optional(),
    customer: Number_.optional(),
    phoneNumber: z.object({ number: z.string().optional(), assistantId: z.string().nullish() }).passthrough().optional(),
    assistant: z.object({ id: z.string().optional() }).passthrough().optional(),
    startedAt: z.string().optional(),
    endedAt: z.string().optional(),
    cost: z.number().optional(),
    summary: z.string().optional(),
  })
  .passthrough();
const Envelope = z.object({ message: Message });

// --- helpers ------------------------------------------------------------------
function verify(req) {
  const signature = req.get('x-signature');
  const timestamp = req.get('x-timestamp');
  if (!signature || !timestamp) return 'missing signature or timestamp';
  const ts = Number(timestamp);
  if (!Number.isFinite(ts) || Math.abs(Date.now() / 1000 - ts) > TOLERANCE_S) return 'stale timestamp';
  const expected = crypto.createHmac('sha256', secret).update(`${timestamp}.`).update(req.body).digest();
  let given;
  try {
    given = Buffer.from(signature, 'hex');
  } catch {
    return 'malformed signature';
  }
  if (given.length !== expected.length || !crypto.timingSafeEqual(given, expected)) return 'bad signature';
  return null;
}

const STATUS_RANK = { scheduled: 1, queued: 2, ringing: 3, 'in-progress': 4, forwarding: 5, ended: 6 };

function e164(raw) {
  if (!raw) return null;
  const digits = raw.replace(/[^\d+]/g, '');
  if (/^\+[1-9]\d{7,14}$/.test(digits)) return digits;
  const bare = digits.replace(/\D/g, '');
  if (bare.length === 10) return `+1${bare}`;
  if (bare.length === 11 && bare.startsWith('1')) return `+${bare}`;
  log('warn', 'Phone number is not valid E.164; stored best-effort', { number: `***${bare.slice(-2)}` });
  return bare || null;
}

function direction(call) {
  switch (call.type) {
    case 'inboundPhoneCall':
      return 'inbound';
    case 'outboundPhoneCall':
      return 'outbound';
    case 'webCall':
    case 'vapi.websocketCall':
      return 'web';
    default:
      return null;
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function findAgent(client, assistantId) {
  for (let attempt = 0; ; attempt++) {
    const { rows } = await client.query({
      name: 'agent',
      text: 'SELECT id, org_id, name FROM agents WHERE vapi_assistant_id = $1',
      values: [assistantId],
    });
    if (rows.length) return rows[0];
    if (attempt === RETRY_DELAYS_MS.length) return null;
    await sleep(RETRY_DELAYS_MS[attempt]);
  }
}

// --- the handler ----------------------------------------------------------------
const app = express();
app.disable('x-powered-by');
app.post('/webhooks/vapi', express.raw({ type: 'application/json', limit: '5mb' }), async (req, res) => {
  const started = process.hrtime.bigint();
  const fields = {};
  const answer = (status, body, level = 'info', msg = 'Webhook handled') => {
    res.status(status).json(body);
    const duration_ms = Number(process.hrtime.bigint() - started) / 1e6;
    log(level, msg, { ...fields, outcome: body.outcome ?? body.error, status, duration_ms });
  };
  const refusal = verify(req);
  if (refusal) return answer(401, { error: 'unauthorized' }, 'warn', 'Webhook refused');
  let message;
  try {
    message = Envelope.parse(JSON.parse(req.body.toString('utf8'))).message;
  } catch (error) {
    return answer(400, { error: 'invalid payload' }, 'warn', 'Webhook refused');
  }
  fields.event_type = message.type;
  if (!['status-update', 'end-of-call-report'].includes(message.type) || !message.call) {
    return answer(200, { ok: true, outcome: 'ignored' });
  }
  const call = message.call;
  fields.call_id = call.id;
  const dir = direction(call);
  if (!dir) return answer(400, { error: 'cannot determine call type' }, 'warn', 'Webhook refused');
  const status = message.type === 'end-of-call-report' ? 'ended' : message.status;
  const eventKey =
    message.type === 'end-of-call-report' ? `end-of-call-report|${call.id}` : `status-update|${call.id}|${status}`;

  // The claim, before any side effect.
  const claimKey = `node-peer/claims/${eventKey}`;
  const claimed = await redis.set(claimKey, 'processing', { NX: true, PX: LEASE_MS });
  if (claimed === null) {
    const held = await redis.get(claimKey);
    if (held === 'done') return answer(200, { ok: true, outcome: 'duplicate' });
    return answer(409, { error: 'in progress' }, 'warn', 'Webhook refused');
  }

  const assistantId = call.assistantId ?? message.assistant?.id ?? message.phoneNumber?.assistantId;
  const customer = e164(message.customer?.number ?? call.customer?.number);
  const line = e164(message.phoneNumber?.number);
  const [from, to] = dir === 'inbound' ? [customer, line] : dir === 'outbound' ? [line, customer] : [null, null];
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const agent = assistantId ? await findAgent(client, assistantId) : null;
    if (!agent) {
      await client.query('ROLLBACK');
      await redis.del(claimKey);
      return answer(500, { error: 'agent not found' }, 'error', 'Webhook failed');
    }
    fields.org_id = agent.org_id;
    const inserted = await client.query({
      name: 'claim',
      text: `INSERT INTO processed_webhook_events (event_key, message_type, vapi_call_id, org_id)
       VALUES ($1, $2, $3, $4) ON CONFLICT (event_key) DO NOTHING RETURNING event_key`,
      values: [eventKey, message.type, call.id, agent.org_id],
    });
    if (inserted.rowCount === 0) {
      await client.query('COMMIT');
      await redis.set(claimKey, 'done', { EX: DONE_TTL_S });
      return answer(200, { ok: true, outcome: 'duplicate' });
    }
    const rank = STATUS_RANK[status] ?? null;
    if (dir === 'inbound') {
      await client.query({
        name: 'tracking',
        text: `INSERT INTO call_tracking AS t (vapi_call_id, org_id, agent_id, direction, from_number, to_number, status, status_rank)
         VALUES ($1, $2, $3, 'inbound', $4, $5, $6, $7)
         ON CONFLICT (vapi_call_id) DO UPDATE SET
           status = CASE WHEN EXCLUDED.status_rank > coalesce(t.status_rank, 0) THEN EXCLUDED.status ELSE t.status END,
           status_rank = greatest(t.status_rank, EXCLUDED.status_rank), updated_at = now()`,
        values: [call.id, agent.org_id, agent.id, from, to, status, rank],
      });
    }
    const ms = (iso) => (iso ? new Date(iso) : null);
    await client.query({
      name: 'log',
      text: `INSERT INTO call_logs AS l (vapi_call_id, org_id, agent_id, status, status_rank, metadata, direction,
                                   from_number, to_number, started_at, ended_at, ended_reason, cost, summary)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
       ON CONFLICT (vapi_call_id) DO UPDATE SET
         status = CASE WHEN EXCLUDED.status_rank > coalesce(l.status_rank, 0) THEN EXCLUDED.status ELSE l.status END,
         status_rank = greatest(l.status_rank, EXCLUDED.status_rank),
         started_at = coalesce(l.started_at, EXCLUDED.started_at),
         ended_at = coalesce(EXCLUDED.ended_at, l.ended_at),
         ended_reason = coalesce(EXCLUDED.ended_reason, l.ended_reason),
         cost = coalesce(EXCLUDED.cost, l.cost), summary = coalesce(EXCLUDED.summary, l.summary),
         updated_at = now()`,
      values: [
        call.id, agent.org_id, agent.id, status, rank,
        JSON.stringify({ channel: dir === 'web' ? 'web' : 'phone', direction: dir, is_test_call: dir === 'web' }),
        dir, from, to, ms(message.startedAt), ms(message.endedAt), message.endedReason ?? null,
        message.cost ?? null, message.summary ?? null,
      ],
    });
    await client.query('COMMIT');
    await redis.set(claimKey, 'done', { EX: DONE_TTL_S });
    return answer(200, { ok: true, outcome: 'recorded' });
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {});
    await redis.del(claimKey).catch(() => {});
    fields.error = String(error.message ?? error);
    return answer(500, { error: 'database error' }, 'error', 'Webhook failed');
  } finally {
    client.release();
  }
});

async function main() {
  redis.on('error', (error) => log('error', 'Redis error', { error: String(error.message) }));
  await redis.connect();
  const server = app.listen(Number(port), host, () => {
    const { address, port: bound } = server.address();
    process.stdout.write(`Serving http://${address}:${bound}\n`);
  });
  server.keepAliveTimeout = 65_000;
  const stop = () => server.close(() => Promise.all([pool.end(), redis.quit()]).then(() => process.exit(0)));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((error) => {
  process.stderr.write(`node peer: ${error.stack ?? error}\n`);
  process.exit(1);
});
