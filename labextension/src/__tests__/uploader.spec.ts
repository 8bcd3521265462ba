/**
 * The uploader itself (the model every front end drives), against a scripted tus server
 * plugged into tus-js-client's `httpStack`, with fake timers: states, fingerprints,
 * retries, the offline wait, the 413 fallback and the words shown for each.
 */
import { MAX_RETRY_DELAY, statusLine } from '../core';
import { UploadItem } from '../uploader';
import { fakeFile } from './fakes';
import { IHarness, KiB, harness, run, sameBytes, settle, until } from './harness';

/** The wait before each try, as scheduled (ms). */
function recordWaits(h: IHarness): number[] {
  const waits: number[] = [];
  let last: number | null = null;
  h.uploader.changed.connect((_, item) => {
    if (item?.state === 'retrying' && item.retryAt !== null && item.retryAt !== last) {
      last = item.retryAt;
      waits.push(item.retryAt - Date.now());
    }
  });
  return waits;
}

function lineOf(item: UploadItem): string {
  return statusLine(item, Date.now());
}

jest.setTimeout(30_000);

beforeEach(() => {
  jest.useFakeTimers();
  jest.spyOn(console, 'debug').mockImplementation(() => undefined);
  jest.spyOn(console, 'info').mockImplementation(() => undefined);
  jest.spyOn(console, 'error').mockImplementation(() => undefined);
});

afterEach(() => {
  jest.useRealTimers();
  jest.restoreAllMocks();
});

describe('an upload', () => {
  it('goes queued → uploading → done, in chunks, and says where it landed', async () => {
    const h = harness();
    const file = fakeFile('data.csv', 100 * KiB);
    const done = h.uploader.upload(file, 'data');
    expect(await settle(done)).toBe(true);
    const item = h.uploader.items[0];
    expect(h.states).toEqual(['queued', 'uploading', 'done']);
    expect(sameBytes(h.server.files.get('data/data.csv'), file)).toBe(true);
    expect(h.server.of('POST')).toHaveLength(1);
    expect(h.server.of('PATCH').map(r => r.bodySize)).toEqual(
      [16, 16, 16, 16, 16, 16, 4].map(k => k * KiB)
    );
    expect(h.landed).toEqual([item]);
    expect(item.uploadId).toBe('up1');
    expect(lineOf(item)).toBe('done · 100 KiB → data/data.csv');
    expect(h.storage.entries.size).toBe(0); // nothing left to resume
    // Every request carries the page's authentication.
    expect(h.server.requests.every(r => r.headers['X-XSRFToken'] === 'xsrf')).toBe(true);
  });

  it('asks for the folder listing (the overwrite check) as soon as it is asked for', async () => {
    const listed: string[] = [];
    const h = harness({}, { listFolder: async folder => (listed.push(folder), []) });
    const done = h.uploader.upload(fakeFile('a.csv', KiB), 'data');
    // Before any other step of the upload (lock, stored URLs, file): a drop's first
    // request does not wait for them.
    expect(listed).toEqual(['data']);
    expect(await settle(done)).toBe(true);
    expect(listed).toEqual(['data']); // once
  });

  it('shows progress, speed and time left while it runs', async () => {
    const h = harness();
    const item = new UploadItem('x.bin', 'data', 40 * 1024 * KiB, 'fp', 'uploading');
    item.sent = 12 * 1024 * KiB;
    item.meter.add(0, 0);
    item.meter.add(1000, 12 * 1024 * KiB);
    expect(statusLine(item, 1000)).toBe('30% · 12 MiB of 40 MiB · 12 MiB/s · 2s left');
    expect(h.uploader.items).toHaveLength(0);
  });
});

describe('the fingerprint', () => {
  /** Start an upload and leave it unfinished on the server (the page goes away). */
  async function interrupted(h: IHarness, file: File, folder: string): Promise<void> {
    void h.uploader.upload(file, folder);
    await until(() => h.server.of('PATCH').length >= 2);
    h.server.down = 'network';
    await until(() => h.uploader.items[0].state === 'retrying');
    h.uploader.dispose(); // a reload: nothing terminated, the URL stays stored
    h.server.down = null;
  }

  it('is shared by every front end: another uploader resumes the same file to the same folder', async () => {
    const first = harness();
    const file = fakeFile('survey.bin', 80 * KiB);
    await interrupted(first, file, 'data');
    const held = [...first.server.uploads.values()][0].offset;
    expect(held).toBeGreaterThan(0);

    // The widget's uploader (same page storage, same server) finds it after a reload...
    const widget = harness({}, {}, first);
    await settle(widget.uploader.restore(entry => entry.folder === 'data'));
    const listed = widget.uploader.items[0];
    expect(listed.state).toBe('interrupted');
    expect(listed.sent).toBe(held);
    expect(lineOf(listed)).toContain('interrupted at ');
    expect(lineOf(listed)).toContain('→ data/ · Resume and pick the file again');

    // ...and picking the file again resumes it: no new upload, only the rest is sent.
    const mark = first.server.requests.length;
    expect(await settle(widget.uploader.upload(file, 'data'))).toBe(true);
    expect(first.server.of('POST', mark)).toHaveLength(0);
    const patches = first.server.of('PATCH', mark);
    expect(Number(patches[0].headers['Upload-Offset'])).toBe(held);
    expect(patches.reduce((n, r) => n + r.bodySize, 0)).toBe(file.size - held);
    expect(sameBytes(first.server.files.get('data/survey.bin'), file)).toBe(true);
    expect(widget.uploader.items).toHaveLength(1); // the interrupted row became this upload
  });

  it('includes the destination: the same file to another folder is another upload', async () => {
    const first = harness();
    const file = fakeFile('survey.bin', 80 * KiB);
    await interrupted(first, file, 'data');
    const other = harness({}, {}, first);
    await settle(other.uploader.restore(entry => entry.folder === 'elsewhere'));
    expect(other.uploader.items).toHaveLength(0);
    const mark = first.server.requests.length;
    expect(await settle(other.uploader.upload(file, 'elsewhere'))).toBe(true);
    expect(first.server.of('POST', mark)).toHaveLength(1);
    expect(first.server.of('HEAD', mark)).toHaveLength(0);
    expect(first.server.files.has('elsewhere/survey.bin')).toBe(true);
    expect(first.server.files.has('data/survey.bin')).toBe(false);
  });
});

describe('network errors never end an upload', () => {
  it('retries with a capped exponential backoff, then resumes from the server offset', async () => {
    const h = harness();
    const file = fakeFile('big.bin', 64 * KiB);
    const waits = recordWaits(h);
    const done = h.uploader.upload(file, '');
    await until(() => h.server.of('PATCH').length >= 1);
    h.server.down = 'network';
    const item = h.uploader.items[0];
    await until(() => item.state === 'retrying');
    expect(lineOf(item)).toMatch(/^connection lost, retrying (in 0s|now) · /);

    // The waits between tries: the configured delays, then doubling up to 30 s, forever.
    await until(() => waits.length >= 10);
    expect(waits.slice(0, 10)).toEqual([
      0, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000, 30000
    ]);
    expect(Math.max(...waits)).toBe(MAX_RETRY_DELAY);
    expect(lineOf(item)).toMatch(
      /^connection lost, retrying in 30s · \d+% · \d+(\.\d)? [KMG]?i?B of 64 KiB$/
    );
    await run(5000);
    expect(lineOf(item)).toMatch(/^connection lost, retrying in 25s · /); // counts down

    // The server comes back: HEAD for its offset, then the rest.
    const mark = h.server.requests.length;
    h.server.down = null;
    expect(await settle(done)).toBe(true);
    const after = h.server.requests.slice(mark).filter(r => r.status > 0);
    expect(after[0].method).toBe('HEAD');
    expect(h.server.of('POST')).toHaveLength(1);
    expect(sameBytes(h.server.files.get('big.bin'), file)).toBe(true);
    expect(h.states).toEqual(['queued', 'uploading', 'retrying', 'uploading', 'done']);
  });

  it('starts the backoff anew after every chunk that lands', async () => {
    const h = harness();
    const file = fakeFile('flaky.bin', 160 * KiB);
    // Every second PATCH drops, for the whole file.
    let n = 0;
    h.server.rules.push(r => (r.method === 'PATCH' && n++ % 2 === 1 ? 'network' : undefined));
    const waits = recordWaits(h);
    const done = h.uploader.upload(file, '');
    await until(() => h.uploader.items[0].state === 'done');
    expect(await settle(done)).toBe(true);
    expect(waits.length).toBeGreaterThan(5);
    expect(new Set(waits)).toEqual(new Set([0])); // never past the first delay
    expect(sameBytes(h.server.files.get('flaky.bin'), file)).toBe(true);
  });

  it('waits for the browser to be online instead of failing', async () => {
    const h = harness();
    const file = fakeFile('offline.bin', 64 * KiB);
    const done = h.uploader.upload(file, 'data');
    await until(() => h.server.of('PATCH').length >= 1);
    h.net.online = false;
    h.server.down = 'network';
    const item = h.uploader.items[0];
    await until(() => item.state === 'retrying');
    expect(item.offline).toBe(true);
    expect(lineOf(item)).toMatch(/^offline, waiting for the network · \d+% · /);
    const mark = h.server.requests.length;
    await run(10 * 60_000); // ten minutes offline: no request, no failure
    expect(h.server.requests.length).toBe(mark);
    expect(item.state).toBe('retrying');
    expect(h.net.waiters).toBe(1);

    h.server.down = null;
    h.net.goOnline();
    expect(await settle(done)).toBe(true);
    expect(sameBytes(h.server.files.get('data/offline.bin'), file)).toBe(true);
  });

  it('treats JupyterHub (or a proxy) answering for a stopped server as the server being away', async () => {
    const h = harness();
    const file = fakeFile('hub.bin', 64 * KiB);
    const done = h.uploader.upload(file, '');
    await until(() => h.server.of('PATCH').length >= 1);
    // The hub answers every request with an HTML 404 (no Tus-Resumable), then a 503.
    h.server.down = { status: 404, body: '<html>Server not running</html>' };
    const item = h.uploader.items[0];
    await until(() => item.state === 'retrying' && h.server.of('HEAD').length >= 2);
    expect(item.retryReason).toBe('server not reachable');
    expect(lineOf(item)).toMatch(/^server not reachable, retrying (in \d+s|now) · /);
    h.server.down = { status: 503, body: '<html>Service Unavailable</html>' };
    await run(40_000);
    expect(item.state).toBe('retrying');
    h.server.down = null;
    expect(await settle(done)).toBe(true);
    // The upload was never forgotten and created again.
    expect(h.server.of('POST')).toHaveLength(1);
    expect(sameBytes(h.server.files.get('hub.bin'), file)).toBe(true);
  });

  it('gives up on a request that hangs, and tries again', async () => {
    const h = harness();
    const file = fakeFile('stall.bin', 64 * KiB);
    let hung = false;
    h.server.rules.push(r => {
      if (r.method === 'PATCH' && !hung && Number(r.headers['Upload-Offset']) > 0) {
        hung = true;
        return 'hang';
      }
      return undefined;
    });
    const done = h.uploader.upload(file, '');
    const item = h.uploader.items[0];
    await until(() => hung);
    await run(59_000);
    expect(item.state).toBe('uploading');
    await until(() => item.state === 'retrying', 2000);
    expect(item.retryReason).toBe('no answer from the server');
    expect(await settle(done)).toBe(true);
    expect(sameBytes(h.server.files.get('stall.bin'), file)).toBe(true);
  });

  it('fails in plain words when the file cannot be read any more', async () => {
    const h = harness();
    const file = fakeFile('moved.bin', 64 * KiB);
    void h.uploader.upload(file, '');
    await until(() => h.server.of('PATCH').length >= 1);
    h.server.down = 'network';
    const item = h.uploader.items[0];
    await until(() => item.state === 'retrying');
    (file as unknown as { unreadable: boolean }).unreadable = true;
    h.server.down = null;
    await until(() => item.state === 'failed');
    expect(lineOf(item)).toMatch(
      /^failed · \d+% · the file cannot be read any more \(moved, changed or deleted\?\); pick it again$/
    );
  });
});

describe('refusals that retrying cannot fix end the upload, in plain words', () => {
  const cases: [
    string,
    { status: number; headers?: Record<string, string>; body?: string },
    RegExp
  ][] = [
    [
      'no permission (403)',
      {
        status: 403,
        headers: { 'Tus-Resumable': '1.0.0' },
        body: '{"message": "data is read-only"}'
      },
      /^failed · 0% · no permission to upload to data\/: data is read-only$/
    ],
    [
      'too big (413 at creation)',
      {
        status: 413,
        headers: { 'Tus-Resumable': '1.0.0' },
        body: '{"message": "over the 1 GiB limit"}'
      },
      /^failed · 0% · the file is larger than the server accepts: over the 1 GiB limit$/
    ],
    [
      'logged out (401)',
      { status: 401, body: '<html>login</html>' },
      /^failed · 0% · not logged in any more: reload the page, log in, then Resume$/
    ]
  ];
  it.each(cases)('%s', async (_, answer, expected) => {
    const h = harness();
    h.server.rules.push(r => (r.method === 'POST' ? answer : undefined));
    void h.uploader.upload(fakeFile('x.csv', 10 * KiB), 'data');
    const item = () => h.uploader.items[0];
    await until(() => item().state === 'failed');
    expect(lineOf(item())).toMatch(expected);
    await run(120_000);
    expect(h.server.of('POST')).toHaveLength(1); // never retried
  });

  it('gone (404 from the tus server): Resume starts it again', async () => {
    const h = harness();
    const file = fakeFile('gone.bin', 64 * KiB);
    const done = h.uploader.upload(file, '');
    await until(() => h.server.of('PATCH').length >= 1);
    h.server.uploads.clear(); // cancelled in another tab, or expired
    const item = h.uploader.items[0];
    await until(() => item.state === 'failed');
    expect(item.error).toBe(
      'the server no longer has this upload (cancelled elsewhere or expired); Resume starts it again'
    );
    await settle(h.uploader.resume(item));
    expect(await settle(done)).toBe(true);
    expect(h.server.of('POST')).toHaveLength(2);
    expect(sameBytes(h.server.files.get('gone.bin'), file)).toBe(true);
  });

  it('a name taken at creation asks; no keeps the existing file, yes replaces it', async () => {
    const h = harness();
    h.server.files.set('data/notes.txt', new Uint8Array([1]));
    const file = fakeFile('notes.txt', 5 * KiB);
    h.answer = false;
    expect(await settle(h.uploader.upload(file, 'data'))).toBe(false);
    expect(h.asked).toEqual(['notes.txt']);
    expect(h.uploader.items[0].state).toBe('cancelled');
    expect(h.server.files.get('data/notes.txt')).toEqual(new Uint8Array([1]));

    h.answer = true;
    expect(await settle(h.uploader.upload(file, 'data'))).toBe(true);
    expect(sameBytes(h.server.files.get('data/notes.txt'), file)).toBe(true);
    expect(h.uploader.items.filter(i => i.state === 'done')).toHaveLength(1);
  });

  it('never shows tus-js-client’s raw error text', async () => {
    const h = harness();
    const file = fakeFile('raw.bin', 64 * KiB);
    const lines: string[] = [];
    h.uploader.changed.connect((_, item) => item && lines.push(lineOf(item)));
    void h.uploader.upload(file, '');
    await until(() => h.server.of('PATCH').length >= 1);
    h.server.down = 'network';
    await run(60_000);
    h.server.down = { status: 500, body: 'Traceback (most recent call last): ...' };
    await run(60_000);
    h.server.down = null;
    h.server.uploads.clear();
    await until(() => h.uploader.items[0].state === 'failed');
    expect(lines.length).toBeGreaterThan(5);
    expect(lines.some(l => l.startsWith('server error (500), retrying in'))).toBe(true);
    for (const line of lines) {
      expect(line).not.toMatch(/tus:|ProgressEvent|Traceback|originated from|response code/);
    }
  });
});

describe('parallel uploads (tus concatenation)', () => {
  it('survive a lost connection and a pause: the parts resume, nothing is created twice', async () => {
    const h = harness({ chunkSize: 8 * KiB, parallelUploads: 2 });
    const file = fakeFile('parallel.bin', 96 * KiB);
    const done = h.uploader.upload(file, 'data');
    const item = h.uploader.items[0];
    await until(() => h.server.of('PATCH').length >= 4);
    h.server.down = 'network';
    await until(() => item.state === 'retrying');
    h.server.down = null;
    await until(() => item.state === 'uploading' && h.server.of('PATCH').length >= 8);
    h.uploader.pause(item);
    await run(5000);
    const mark = h.server.requests.length;
    await run(60_000);
    expect(h.server.requests.length).toBe(mark);
    await settle(h.uploader.resume(item));
    // A drop after the restart is seen at once (not only by the 60 s stall watchdog).
    await until(() => item.state === 'uploading' && h.server.of('PATCH', mark).length >= 2);
    h.server.down = 'network';
    await until(() => item.state === 'retrying', 1000);
    expect(item.retryReason).toBe('connection lost');
    h.server.down = null;
    expect(await settle(done)).toBe(true);
    expect(sameBytes(h.server.files.get('data/parallel.bin'), file)).toBe(true);
    const posts = h.server.of('POST').map(r => (r.headers['Upload-Concat'] ?? '').split(';')[0]);
    expect(posts.sort()).toEqual(['final', 'partial', 'partial']);
    expect(item.sent).toBe(file.size);
    expect(lineOf(item)).toBe('done · 96 KiB → data/parallel.bin');
  });
});

describe('behind a proxy with a body limit (413)', () => {
  it('halves the refused body (not the chunk setting), and the next file starts there', async () => {
    const warn = jest.spyOn(console, 'warn').mockImplementation(() => undefined);
    const h = harness({ chunkSize: 1024 * KiB, minChunkSize: 16 * KiB });
    const limit = 100_000;
    h.server.rules.push(r =>
      r.bodySize > limit
        ? { status: 413, body: '<html>413 Request Entity Too Large</html>' }
        : undefined
    );
    const file = fakeFile('behind-nginx.bin', 300_000);
    expect(await settle(h.uploader.upload(file, ''))).toBe(true);
    const refused = h.server.requests.filter(r => r.status === 413);
    // The real body: a 300 kB file (sent whole in the creation request), not 1 MiB.
    expect(refused.map(r => [r.method, r.bodySize])).toEqual([
      ['POST', 300_000],
      ['PATCH', 150_000]
    ]);
    expect(sameBytes(h.server.files.get('behind-nginx.bin'), file)).toBe(true);
    expect(h.uploader.learnedChunkSize).toBe(75_000);
    expect(warn).toHaveBeenCalledTimes(1);
    expect(warn.mock.calls[0][0]).toContain('refused a 300000 byte request with 413');

    const mark = h.server.requests.length;
    expect(await settle(h.uploader.upload(fakeFile('second.bin', 200_000), ''))).toBe(true);
    expect(h.server.requests.slice(mark).filter(r => r.status === 413)).toHaveLength(0);
    expect(warn).toHaveBeenCalledTimes(1);
  });

  it('fails in plain words when even the smallest chunk is refused', async () => {
    jest.spyOn(console, 'warn').mockImplementation(() => undefined);
    const h = harness({ chunkSize: 64 * KiB, minChunkSize: 16 * KiB });
    h.server.rules.push(r => (r.bodySize > 0 ? { status: 413 } : undefined));
    void h.uploader.upload(fakeFile('tiny-limit.bin', 64 * KiB), '');
    await until(() => h.uploader.items[0]?.state === 'failed');
    const refused = h.server.requests.filter(r => r.status === 413);
    expect(refused.map(r => [r.method, r.bodySize])).toEqual([
      ['POST', 64 * KiB],
      ['PATCH', 32 * KiB],
      ['PATCH', 16 * KiB]
    ]);
    expect(h.uploader.items[0].error).toBe(
      'a proxy refuses even the smallest chunks (413); its body size limit must be raised'
    );
  });
});

describe('uploads at the same time', () => {
  it('files sent in chunks: six at a time, the others wait their turn', async () => {
    const h = harness({ chunkSize: 16 * KiB });
    let most = 0;
    h.uploader.changed.connect(() => {
      const sending = h.uploader.items.filter(i => ['uploading', 'retrying'].includes(i.state));
      most = Math.max(most, sending.length);
    });
    const files = Array.from({ length: 10 }, (_, i) => fakeFile(`big${i}.bin`, 40 * KiB));
    const all = Promise.all(files.map(f => h.uploader.upload(f, '')));
    await until(() => h.uploader.items.every(i => i.state === 'done'));
    expect(await all).toEqual(files.map(() => true));
    expect(most).toBe(6);
  });
});

describe("the server's chunk limit (max_chunk_size)", () => {
  it('is obeyed from the probe on: no body is ever refused', async () => {
    const h = harness({ chunkSize: 1024 * KiB });
    h.server.maxChunkSize = 100_000;
    h.uploader.limitChunks(100_000); // what probeEndpoint read from OPTIONS
    const file = fakeFile('limited.bin', 250_000);
    expect(await settle(h.uploader.upload(file, ''))).toBe(true);
    expect(h.server.requests.filter(r => r.status === 413)).toHaveLength(0);
    expect(Math.max(...h.server.requests.map(r => r.bodySize))).toBe(100_000);
    expect(sameBytes(h.server.files.get('limited.bin'), file)).toBe(true);
  });
  it("is learned from the server's 413 on a body sent before it was known", async () => {
    const h = harness({ chunkSize: 1024 * KiB });
    h.server.maxChunkSize = 100_000;
    // Fits one chunk: sent whole in its creation request, which the server refuses.
    const file = fakeFile('refused-once.bin', 250_000);
    expect(await settle(h.uploader.upload(file, ''))).toBe(true);
    const refused = h.server.requests.filter(r => r.status === 413);
    expect(refused.map(r => [r.method, r.bodySize])).toEqual([['POST', 250_000]]);
    expect(Math.max(...h.server.requests.filter(r => r.status !== 413).map(r => r.bodySize))).toBe(
      100_000
    );
    expect(sameBytes(h.server.files.get('refused-once.bin'), file)).toBe(true);
  });
  it('is learned from the first answer when the probe did not say it', async () => {
    const h = harness({ chunkSize: 1024 * KiB });
    h.server.maxChunkSize = 100_000;
    // Bigger than a chunk: the creation carries no body, its answer says the limit.
    const file = fakeFile('learned.bin', 1500 * KiB);
    expect(await settle(h.uploader.upload(file, ''))).toBe(true);
    expect(h.server.requests.filter(r => r.status === 413)).toHaveLength(0);
    expect(h.uploader.serverChunkLimit).toBe(100_000);
    expect(sameBytes(h.server.files.get('learned.bin'), file)).toBe(true);
  });
});

describe('pause, resume, cancel', () => {
  it('pause stops sending; resume goes on from the server offset', async () => {
    const h = harness();
    const file = fakeFile('pause.bin', 96 * KiB);
    const done = h.uploader.upload(file, '');
    await until(() => h.server.of('PATCH').length >= 2);
    const item = h.uploader.items[0];
    h.uploader.pause(item);
    expect(item.state).toBe('paused');
    expect(lineOf(item)).toMatch(/^paused · \d+% · \d+ KiB of 96 KiB$/);
    await run(1000);
    const mark = h.server.requests.length;
    await run(60_000);
    expect(h.server.requests.length).toBe(mark);
    const held = [...h.server.uploads.values()][0].offset;
    await settle(h.uploader.resume(item));
    expect(await settle(done)).toBe(true);
    const head = h.server.of('HEAD', mark)[0];
    expect(head).toBeDefined();
    expect(Number(h.server.of('PATCH', mark)[0].headers['Upload-Offset'])).toBe(held);
    expect(sameBytes(h.server.files.get('pause.bin'), file)).toBe(true);
  });

  it('cancel while retrying terminates the upload and stops retrying', async () => {
    const h = harness();
    const file = fakeFile('cancel.bin', 96 * KiB);
    const done = h.uploader.upload(file, '');
    await until(() => h.server.of('PATCH').length >= 2);
    h.server.rules.push(r => (r.method === 'PATCH' ? 'network' : undefined));
    const item = h.uploader.items[0];
    await until(() => item.state === 'retrying');
    await settle(h.uploader.cancel(item));
    expect(await settle(done)).toBe(false);
    expect(item.state).toBe('cancelled');
    expect(h.server.of('DELETE')).toHaveLength(1);
    expect(h.server.uploads.size).toBe(0);
    expect(h.storage.entries.size).toBe(0);
    const mark = h.server.requests.length;
    await run(120_000);
    expect(h.server.requests.length).toBe(mark);
  });
});
