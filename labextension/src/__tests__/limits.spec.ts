/**
 * The edges of the chunk limits, concurrency and adoption (a review's attempts to break
 * them): a 413 from the tus server that is not about the chunk, uploads queued before a
 * limit was learned, chunked uploads after a 413 turned one-request uploads into chunked
 * ones, and uploads adopted from the server's list.
 */
import { UploadItem } from '../uploader';
import { ENDPOINT, fakeFile } from './fakes';
import { KiB, harness, run, sameBytes, scriptUpload, settle, until } from './harness';

jest.setTimeout(30_000);

beforeEach(() => {
  jest.useFakeTimers();
  jest.spyOn(console, 'debug').mockImplementation(() => undefined);
  jest.spyOn(console, 'info').mockImplementation(() => undefined);
  jest.spyOn(console, 'error').mockImplementation(() => undefined);
  jest.spyOn(console, 'warn').mockImplementation(() => undefined);
});

afterEach(() => {
  jest.useRealTimers();
  jest.restoreAllMocks();
});

/** The tus server's answer to a creation over its max_size, with the limits it says on
 * every answer (jupyter_tus: set_limit_headers). */
function overMaxSize(maxSize: number, maxChunk: number) {
  return (r: { method: string; headers: Record<string, string> }) =>
    r.method === 'POST' && Number(r.headers['Upload-Length']) > maxSize
      ? {
          status: 413,
          headers: {
            'Tus-Resumable': '1.0.0',
            'Jupyter-Tus-Max-Chunk-Size': String(maxChunk),
            'Upload-Limit': `max-size=${maxSize}, max-append-size=${maxChunk}`
          },
          body: JSON.stringify({ message: `Upload-Length over Tus-Max-Size (${maxSize})` })
        }
      : undefined;
}

describe('a 413 from the tus server that is not about the chunk', () => {
  it('a file over max_size sent whole is too large, not a chunk too big: nothing learned', async () => {
    const h = harness({ chunkSize: 1024 * KiB, minChunkSize: 64 * KiB });
    h.uploader.limitChunks(512 * KiB);
    h.server.rules.push(overMaxSize(100 * KiB, 512 * KiB));
    void h.uploader.upload(fakeFile('too-big.bin', 300 * KiB), '');
    const item = h.uploader.items[0];
    await until(() => item.state === 'failed');
    expect(item.error).toMatch(/^the file is larger than the server accepts/);
    // Not taken for a proxy's limit: no chunk size remembered for the endpoint.
    expect(h.memory.size).toBe(0);
    expect(h.uploader.learnedChunkSize).toBeNull();
    expect(h.server.requests.filter(r => r.status === 413)).toHaveLength(1);
  });

  it('a small file over max_size fails as too large, not as a proxy refusing every chunk', async () => {
    const h = harness({ chunkSize: 1024 * KiB, minChunkSize: 64 * KiB });
    h.uploader.limitChunks(512 * KiB);
    h.server.rules.push(overMaxSize(10 * KiB, 512 * KiB));
    void h.uploader.upload(fakeFile('small.bin', 40 * KiB), '');
    const item = h.uploader.items[0];
    await until(() => item.state === 'failed');
    expect(item.error).toMatch(/^the file is larger than the server accepts/);
    expect(h.memory.size).toBe(0);
  });

  it("a proxy's 413 is a proxy's: the retry keeps under the server's limit too, and only the proxy's is remembered", async () => {
    // The server allows 256 KiB (its parts' creations say so), the proxy in front 150 kB.
    const h = harness({ chunkSize: 2048 * KiB, minChunkSize: 16 * KiB, parallelUploads: 2 });
    h.server.maxChunkSize = 256 * KiB;
    h.server.rules.push(r =>
      r.bodySize > 150_000 ? { status: 413, body: '<html>413</html>' } : undefined
    );
    const file = fakeFile('two-limits.bin', 4096 * KiB);
    expect(await settle(h.uploader.upload(file, ''))).toBe(true);
    expect(sameBytes(h.server.files.get('two-limits.bin'), file)).toBe(true);
    const refused = h.server.requests.filter(r => r.status === 413);
    // The parts' first bodies (2 MiB each), then 256 KiB (the server's limit, not the
    // 1 MiB a proxy's 413 leads to), then 128 KiB goes through.
    expect([...new Set(refused.map(r => r.bodySize))]).toEqual([2048 * KiB, 256 * KiB]);
    expect(h.uploader.learnedChunkSize).toBe(128 * KiB);
  });
});

describe('uploads queued before a limit was learned', () => {
  it("start with the chunk a proxy's 413 taught: one refusal per endpoint, not per file", async () => {
    // One upload at a time: the second file waits while the first meets the proxy.
    const h = harness({ chunkSize: 1024 * KiB, minChunkSize: 16 * KiB }, { maxConcurrent: 1 });
    h.server.rules.push(r =>
      r.bodySize > 100_000 ? { status: 413, body: '<html>413</html>' } : undefined
    );
    const files = Array.from({ length: 5 }, (_, i) => fakeFile(`queued${i}.bin`, 300_000));
    const all = Promise.all(files.map(f => h.uploader.upload(f, '')));
    expect(await settle(all)).toEqual(files.map(() => true));
    const refused = h.server.requests.filter(r => r.status === 413);
    // The three sent whole at once (3 × maxConcurrent) meet the proxy, one 150 kB chunk
    // meets it too: the two files that waited their turn start below its limit.
    expect(refused.map(r => r.bodySize)).toEqual([300_000, 300_000, 300_000, 150_000]);
    for (const f of files) {
      expect(sameBytes(h.server.files.get(f.name), f)).toBe(true);
    }
  });

  it("start with the server's limit learned from an answer", async () => {
    const h = harness({ chunkSize: 1024 * KiB }, { maxConcurrent: 1 });
    h.server.maxChunkSize = 100_000;
    const files = Array.from({ length: 8 }, (_, i) => fakeFile(`after${i}.bin`, 300_000));
    const all = Promise.all(files.map(f => h.uploader.upload(f, '')));
    expect(await settle(all)).toEqual(files.map(() => true));
    // Only the three sent before the limit was known (3 × maxConcurrent at once).
    expect(h.server.requests.filter(r => r.status === 413)).toHaveLength(3);
  });
});

describe('uploads at the same time, after a 413', () => {
  it('files a 413 turned into chunked uploads count as chunked: maxConcurrent of them', async () => {
    const h = harness({ chunkSize: 64 * KiB, minChunkSize: 8 * KiB }, { maxConcurrent: 2 });
    h.server.rules.push(r =>
      r.bodySize > 32 * KiB ? { status: 413, body: '<html>413</html>' } : undefined
    );
    // Six files sent whole (3 × 2 in flight): each meets the proxy, then goes in chunks.
    const files = Array.from({ length: 6 }, (_, i) => fakeFile(`small${i}.bin`, 48 * KiB));
    let most = 0;
    const chunked = (i: UploadItem) =>
      ['uploading', 'retrying'].includes(i.state) && !i.upload?.options.uploadDataDuringCreation;
    h.uploader.changed.connect(() => {
      most = Math.max(most, h.uploader.items.filter(chunked).length);
    });
    const all = Promise.all(files.map(f => h.uploader.upload(f, '')));
    expect(await settle(all)).toEqual(files.map(() => true));
    expect(most).toBe(2);
    for (const f of files) {
      expect(sameBytes(h.server.files.get(f.name), f)).toBe(true);
    }
  });
});

describe('an upload adopted from the server list', () => {
  it('goes on from the offset with parallelUploads > 1 too: no new upload', async () => {
    const h = harness({ chunkSize: 16 * KiB, parallelUploads: 3 });
    const file = fakeFile('from-a-script.bin', 100 * KiB);
    const url = scriptUpload(h.server, file, 'data', 40 * KiB);
    const mark = h.server.requests.length;
    expect(await settle(h.uploader.adopt(url, file.size, file, 'data'))).toBe(true);
    expect(h.server.of('POST', mark)).toHaveLength(0);
    expect(Number(h.server.of('PATCH', mark)[0].headers['Upload-Offset'])).toBe(40 * KiB);
    expect(sameBytes(h.server.files.get('data/from-a-script.bin'), file)).toBe(true);
    const item = h.uploader.items[0];
    expect(item.resumedFrom).toBe(40 * KiB);
    expect(item.sent).toBe(file.size);
  });

  it('whose URL is gone (404 from tus) starts a new upload of the file', async () => {
    const h = harness();
    const file = fakeFile('gone.bin', 100 * KiB);
    const url = scriptUpload(h.server, file, 'data', 40 * KiB);
    h.server.uploads.clear(); // cancelled elsewhere, or expired and swept
    expect(await settle(h.uploader.adopt(url, file.size, file, 'data'))).toBe(true);
    expect(h.server.of('HEAD').map(r => r.status)).toEqual([404]);
    expect(h.server.of('POST')).toHaveLength(1);
    expect(sameBytes(h.server.files.get('data/gone.bin'), file)).toBe(true);
    expect(h.storage.entries.size).toBe(0);
  });

  it('of a length the script deferred goes on from the offset and says the length', async () => {
    const h = harness();
    const file = fakeFile('deferred.bin', 100 * KiB);
    const url = scriptUpload(h.server, file, 'data', 40 * KiB, true);
    const mark = h.server.requests.length;
    expect(await settle(h.uploader.adopt(url, null, file, 'data'))).toBe(true);
    expect(h.server.of('POST', mark)).toHaveLength(0);
    const patches = h.server.of('PATCH', mark);
    expect(Number(patches[0].headers['Upload-Offset'])).toBe(40 * KiB);
    expect(patches[patches.length - 1].headers['Upload-Length']).toBe(String(file.size));
    expect(sameBytes(h.server.files.get('data/deferred.bin'), file)).toBe(true);
  });

  it('of a file this page is sending is refused, and nothing is stored for it', async () => {
    const h = harness();
    const file = fakeFile('twice.bin', 100 * KiB);
    const url = scriptUpload(h.server, file, 'data', 40 * KiB);
    const first = h.uploader.adopt(url, file.size, file, 'data');
    await until(() => h.uploader.items[0]?.state === 'uploading');
    const stored = h.storage.entries.size;
    await expect(h.uploader.adopt(url, file.size, file, 'data')).rejects.toThrow(
      '"twice.bin" is already being uploaded to data'
    );
    expect(h.storage.entries.size).toBe(stored);
    expect(await settle(first)).toBe(true);
    expect(h.storage.entries.size).toBe(0);
  });

  it('resolves a path-only URL against the endpoint', async () => {
    const h = harness();
    const file = fakeFile('relative.bin', 40 * KiB);
    const url = scriptUpload(h.server, file, '', 16 * KiB);
    expect(url.startsWith('/')).toBe(true);
    expect(await settle(h.uploader.adopt(url, file.size, file, ''))).toBe(true);
    expect(h.server.of('HEAD')[0].url).toBe(`${ENDPOINT}/${url.split('/').pop()}`);
    await run(0);
  });
});
