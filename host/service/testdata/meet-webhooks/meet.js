// What OpenVidu Meet (commit c33ee721, /work/shared/spec/openvidu-meet.md)
// sends for each *.webhook.json here: its toRecordingInfo (§6.2) and
// sendWebhookEvent (§8.2) written out in Node, with Meet's MEET_API_KEY
// "meet-api-key" and a creationDate fixed at 1745318193000.
// Regenerate golden.json with: node meet.js > golden.json
'use strict';
const crypto = require('crypto');
const fs = require('fs');
const path = require('path');

const key = 'meet-api-key';
const creationDate = 1745318193000;

// protobuf-es reads an enum by name or by number; a number it has no name
// for stays that number (proto3 enums are open).
const egressStatus = ['EGRESS_STARTING', 'EGRESS_ACTIVE', 'EGRESS_ENDING', 'EGRESS_COMPLETE', 'EGRESS_FAILED', 'EGRESS_ABORTED', 'EGRESS_LIMIT_REACHED'];
function enumNumber(v) {
  if (v === undefined) return 0;
  if (typeof v === 'number') return v;
  const n = egressStatus.indexOf(v);
  return n < 0 ? 0 : n; // ignoreUnknownFields drops an unknown name
}

// extractOpenViduStatus: anything unknown is FAILED.
function extractOpenViduStatus(n) {
  return ['STARTING', 'ACTIVE', 'ENDING', 'COMPLETE', 'FAILED', 'ABORTED', 'LIMIT_REACHED'][n] ?? 'FAILED';
}

function toRecordingInfo(e) {
  const filename = e.fileResults[0].filename.split('/').pop();
  const uid = filename.split('--')[1].split('.')[0];
  const startNs = e.startedAt && Number(e.startedAt) !== 0 ? e.startedAt : (e.updatedAt ?? 0);
  const endDate = Number(e.endedAt ?? 0) * (1 / 1_000_000);
  const duration = Number(e.fileResults[0].duration ?? 0) * (1 / 1_000_000_000);
  const size = Number(e.fileResults[0].size ?? 0);
  return {
    recordingId: `${e.roomName}--${e.egressId}--${uid}`,
    roomId: e.roomName,
    status: extractOpenViduStatus(enumNumber(e.status)),
    filename,
    startDate: Number(startNs) * (1 / 1_000_000),
    endDate: endDate || undefined,
    duration: duration || undefined,
    size: size || undefined,
    errorCode: e.errorCode ? Number(e.errorCode) : undefined,
    error: e.error ? String(e.error) : undefined,
    details: e.details ? String(e.details) : undefined,
  };
}

const events = { egress_started: 'recordingStarted', egress_updated: 'recordingUpdated', egress_ended: 'recordingEnded' };
const out = [];
for (const name of fs.readdirSync(__dirname).filter((f) => f.endsWith('.webhook.json')).sort()) {
  const wh = JSON.parse(fs.readFileSync(path.join(__dirname, name), 'utf8'));
  const info = toRecordingInfo(wh.egressInfo);
  const [roomId, egressId, uid] = info.recordingId.split('--');
  const body = JSON.stringify({ event: events[wh.event], creationDate, data: info });
  const signature = crypto.createHmac('sha256', key).update(`${creationDate}.${body}`).digest('hex');
  out.push({
    webhook: name,
    metadataKey: `openvidu-meet/recordings/.metadata/${roomId}/${egressId}/${uid}.json`,
    metadata: JSON.stringify(info),
    headers: { 'Content-Type': 'application/json', 'X-Timestamp': String(creationDate), 'X-Signature': signature },
    body,
  });
}
process.stdout.write(JSON.stringify(out, null, 2) + '\n');
