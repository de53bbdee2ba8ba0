// Snapdisk driven by the official Node SDKs, unmodified: the Tea generation
// (@alicloud/ecs20140526 over @alicloud/openapi-client, ACS3-HMAC-SHA256 by default and
// HMAC-SHA1 with signatureAlgorithm 'v2') and the older @alicloud/pop-core (HMAC-SHA1, GET with
// every parameter in the query, or POST with a form body).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import EcsModule, * as $Ecs from '@alicloud/ecs20140526';
import * as $OpenApi from '@alicloud/openapi-client';
import RPCClientModule from '@alicloud/pop-core';

const Ecs = EcsModule.default ?? EcsModule;
const RPCClient = RPCClientModule.default ?? RPCClientModule;
const AK = 'LTAInodetests00000000';
const SECRET = 'nodetestsecret';
const BIN = process.env.SNAPDISK_BIN ?? resolve(import.meta.dirname, '../../target/debug/snapdisk');
let server, dir, port;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'snapdisk-node-'));
  server = spawn(BIN, ['serve', '--vms', 'none', '--data-dir', dir, '--listen', '127.0.0.1:0', '--nbd-listen', '127.0.0.1:0', '--nbd-insecure',
    '--transition-ms', '20'], { env: { ...process.env, SNAPDISK_ACCESS_KEY_ID: AK, SNAPDISK_ACCESS_KEY_SECRET: SECRET } });
  port = await new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error('server did not start')), 30000);
    createInterface({ input: server.stdout }).on('line', (line) => {
      const m = line.match(/^api listening on http:\/\/127\.0\.0\.1:(\d+)$/);
      if (m) { clearTimeout(timer); ok(Number(m[1])); }
    });
  });
});

after(async () => {
  // Wait for the clean shutdown (it writes to the data dir) before removing the data dir.
  const exited = new Promise((ok) => server.once('exit', ok));
  server.kill('SIGTERM');
  await exited;
  rmSync(dir, { recursive: true, force: true });
});

function tea(v2) {
  const config = new $OpenApi.Config({ accessKeyId: AK, accessKeySecret: SECRET, regionId: 'cn-hangzhou',
    endpoint: `127.0.0.1:${port}`, protocol: 'http' });
  if (v2) config.signatureAlgorithm = 'v2';
  return new Ecs(config);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(fn, want) {
  for (let i = 0; i < 500; i++) {
    const got = await fn();
    if (got === want) return;
    await sleep(20);
  }
  throw new Error(`never reached ${want}`);
}

for (const v2 of [false, true]) {
  test(`Tea SDK (${v2 ? 'HMAC-SHA1 v2' : 'ACS3-HMAC-SHA256'}): the ResetDisk lifecycle`, async () => {
    const c = tea(v2);
    const run = await c.runInstances(new $Ecs.RunInstancesRequest({ regionId: 'cn-hangzhou',
      imageId: 'blank_x64_20G.vhd', instanceType: 'ecs.g7.large' }));
    const iid = run.body.instanceIdSets.instanceIdSet[0];
    const inst = async () => (await c.describeInstances(new $Ecs.DescribeInstancesRequest({
      regionId: 'cn-hangzhou', instanceIds: JSON.stringify([iid]) }))).body.instances.instance[0].status;
    await until(inst, 'Running');
    const did = (await c.createDisk(new $Ecs.CreateDiskRequest({ regionId: 'cn-hangzhou',
      zoneId: 'cn-hangzhou-h', size: 40 }))).body.diskId;
    const disk = async () => (await c.describeDisks(new $Ecs.DescribeDisksRequest({ regionId: 'cn-hangzhou',
      diskIds: JSON.stringify([did]) }))).body.disks.disk[0].status;
    await until(disk, 'Available');
    await c.attachDisk(new $Ecs.AttachDiskRequest({ diskId: did, instanceId: iid }));
    await until(disk, 'In_use');
    const sid = (await c.createSnapshot(new $Ecs.CreateSnapshotRequest({ diskId: did }))).body.snapshotId;
    await until(async () => (await c.describeSnapshots(new $Ecs.DescribeSnapshotsRequest({
      regionId: 'cn-hangzhou', snapshotIds: JSON.stringify([sid]) }))).body.snapshots.snapshot[0].status, 'accomplished');
    // Running instance: refused with the documented code and status.
    await assert.rejects(c.resetDisk(new $Ecs.ResetDiskRequest({ diskId: did, snapshotId: sid })),
      (e) => e.code === 'IncorrectInstanceStatus' && e.statusCode === 403);
    await c.stopInstance(new $Ecs.StopInstanceRequest({ instanceId: iid }));
    await until(inst, 'Stopped');
    await assert.rejects(c.resetDisk(new $Ecs.ResetDiskRequest({ diskId: did, snapshotId: sid, dryRun: true })),
      (e) => e.code === 'DryRunOperation' && e.statusCode === 400
        && e.data.Message === 'Request validation has been passed with DryRun flag set.');
    const r = await c.resetDisk(new $Ecs.ResetDiskRequest({ diskId: did, snapshotId: sid }));
    assert.match(r.body.requestId, /^[0-9A-F-]{36}$/);
    await until(disk, 'In_use');
    await c.startInstance(new $Ecs.StartInstanceRequest({ instanceId: iid }));
    await until(inst, 'Running');
  });
}

test('Tea SDK: MissingParameter and not-found errors carry the documented text', async () => {
  const c = tea(false);
  await assert.rejects(c.resetDisk(new $Ecs.ResetDiskRequest({ snapshotId: 's-x' })), (e) => e.code === 'MissingParameter'
    && e.data.Message === 'The input parameter "DiskId" that is mandatory for processing this request is not supplied.');
  await assert.rejects(c.resetDisk(new $Ecs.ResetDiskRequest({ diskId: 'd-nope', snapshotId: 's-nope' })),
    (e) => e.code === 'InvalidDiskId.NotFound' && e.statusCode === 404);
});

for (const method of ['GET', 'POST']) {
  test(`pop-core (${method}): signed requests, success and error bodies`, async () => {
    const c = new RPCClient({ accessKeyId: AK, accessKeySecret: SECRET, endpoint: `http://127.0.0.1:${port}`,
      apiVersion: '2014-05-26' });
    const opts = { method, timeout: 10000 };
    const regions = await c.request('DescribeRegions', {}, opts);
    assert.ok(regions.Regions.Region.some((r) => r.RegionId === 'cn-hangzhou'));
    assert.equal(regions.Code, undefined, 'a success body carries no Code');
    // Characters the signature must encode exactly as the server does.
    // (A Description: the documented naming rules keep such characters out of DiskName.)
    const disk = await c.request('CreateDisk', { RegionId: 'cn-hangzhou', ZoneId: 'cn-hangzhou-i', Size: 20,
      Description: "pop core*(it's) ~ok!" }, opts);
    const d = await c.request('DescribeDisks', { RegionId: 'cn-hangzhou', DiskIds: JSON.stringify([disk.DiskId]) }, opts);
    assert.equal(d.Disks.Disk[0].Description, "pop core*(it's) ~ok!");
    await assert.rejects(c.request('ResetDisk', { DiskId: disk.DiskId, SnapshotId: 's-none' }, opts),
      (e) => e.code === 'InvalidSnapshotId.NotFound' && e.data.Message === 'The specified SnapshotId does not exist.');
    const bad = new RPCClient({ accessKeyId: AK, accessKeySecret: 'wrong', endpoint: `http://127.0.0.1:${port}`,
      apiVersion: '2014-05-26' });
    await assert.rejects(bad.request('DescribeRegions', {}, opts), (e) => e.code === 'SignatureDoesNotMatch');
  });
}
