import t from 'tap';
import { readFileSync } from 'node:fs';
import { BinaryReader } from '@bufbuild/protobuf/wire';
import { descriptorSetPath } from '@aijob/contracts';
import { mutatingRpcs, operatorScopes, rpcAccess, scopes } from '@aijob/core';

/** Every `package.Service/Method` in the descriptor set built from proto/aijob. */
function aijobMethods(): string[] {
  const out: string[] = [];
  const set = new BinaryReader(readFileSync(descriptorSetPath));
  while (set.pos < set.len) {
    const [f, w] = set.tag();
    if (f !== 1) { set.skip(w); continue; }
    const file = new BinaryReader(set.bytes());
    let pkg = '';
    const services: Uint8Array[] = [];
    while (file.pos < file.len) {
      const [ff, fw] = file.tag();
      if (ff === 2) pkg = file.string();
      else if (ff === 6) services.push(file.bytes());
      else file.skip(fw);
    }
    if (!pkg.startsWith('aijob.')) continue;
    for (const sb of services) {
      const s = new BinaryReader(sb);
      let name = '';
      const methods: string[] = [];
      while (s.pos < s.len) {
        const [sf, sw] = s.tag();
        if (sf === 1) name = s.string();
        else if (sf === 2) {
          const m = new BinaryReader(s.bytes());
          while (m.pos < m.len) { const [mf, mw] = m.tag(); if (mf === 1) methods.push(m.string()); else m.skip(mw); }
        } else s.skip(sw);
      }
      for (const m of methods) out.push(`${pkg}.${name}/${m}`);
    }
  }
  return out;
}

t.test('the RPC-to-scope table covers every RPC of every service, and only those', async (t) => {
  const methods = aijobMethods();
  t.ok(methods.length >= 20, `found ${methods.length} RPCs in the contracts`);
  for (const m of methods) t.ok(rpcAccess[m], `${m} has an access rule`);
  for (const m of Object.keys(rpcAccess)) t.ok(methods.includes(m), `${m} in the table is a real RPC`);
  for (const [m, access] of Object.entries(rpcAccess)) {
    t.ok(access === 'public' || access === 'internal' || (scopes as readonly string[]).includes(access), `${m}: ${access} is a known scope`);
  }
  for (const m of mutatingRpcs) t.ok(methods.includes(m), `mutating ${m} is a real RPC`);
});

/** Reads name the state they return; every other RPC a client may call changes something. */
const READ = /^(Get|List|Watch)[A-Z]/;
/** Not audited, each for a reason: a token exchange changes nothing; worker traffic is internal. */
const notAudited: Record<string, string> = {
  'aijob.v1.AuthService/IssueToken': 'mints a short-lived token from a key; changes no state (refused credentials are audited)',
  'aijob.v1.AuthService/Authenticate': 'internal credential check behind every call',
  'aijob.v1.WorkerService/Heartbeat': 'internal worker liveness, many a second',
  'aijob.v1.WorkerService/ConfirmDispatch': 'internal worker acknowledgement of a dispatch',
  'aijob.v1.WorkerGatewayService/Connect': 'a worker session: what it does is recorded as job events, like a NATS worker\'s',
};

t.test('every RPC that changes something is in the mutating list, so each call leaves an audit row', async (t) => {
  for (const m of aijobMethods()) {
    const name = m.split('/')[1]!;
    if (READ.test(name)) {
      t.notOk(mutatingRpcs.has(m), `${m} reads: not in the mutating list`);
      t.notOk(notAudited[m], `${m} reads: needs no exemption`);
    } else if (notAudited[m]) {
      t.notOk(mutatingRpcs.has(m), `${m}: ${notAudited[m]}`);
    } else {
      t.ok(mutatingRpcs.has(m), `${m} changes something: audited, allowed or refused`);
    }
  }
  for (const [m, why] of Object.entries(notAudited)) t.ok(rpcAccess[m], `exempt ${m} is a real RPC (${why})`);
});

t.test('operator scopes are real scopes, and every RPC they guard is one that changes shared queues', async (t) => {
  t.same([...operatorScopes].sort(), ['admin', 'queues:admin', 'workers:run']);
  const guarded = Object.entries(rpcAccess).filter(([, a]) => a === 'queues:admin').map(([m]) => m).sort();
  t.same(guarded, ['aijob.v1.QueueService/ClearQueue', 'aijob.v1.QueueService/PauseQueue',
    'aijob.v1.QueueService/PutQueue', 'aijob.v1.QueueService/ResumeQueue']);
});
