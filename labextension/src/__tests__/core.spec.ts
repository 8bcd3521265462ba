import {
  DEFAULT_SETTINGS,
  MiB,
  MAX_RETRY_DELAY,
  RateMeter,
  authHeaders,
  bodySize,
  buildMetadata,
  classifyFailure,
  describeLanding,
  fingerprint,
  failureMessage,
  formatBytes,
  formatDuration,
  formatPercent,
  getCookie,
  chunkAfter413,
  COMMON_PROXY_LIMIT,
  serverChunkLimit,
  joinPath,
  normalizeFolder,
  normalizeSettings,
  parseFingerprint,
  parseLandedPath,
  retryDelay,
  shouldRetry,
  statusLine,
  IStatusSource
} from '../core';

describe('settings', () => {
  it('defaults to finite 8 MiB chunks', () => {
    expect(normalizeSettings(undefined)).toEqual(DEFAULT_SETTINGS);
    expect(DEFAULT_SETTINGS.chunkSize).toBe(8 * MiB);
  });
  it('keeps valid values and drops nonsense', () => {
    const s = normalizeSettings({
      chunkSize: 1 * MiB,
      parallelUploads: 3,
      sizeThreshold: 1000,
      retryDelays: [0, 10]
    });
    expect(s).toMatchObject({ chunkSize: MiB, parallelUploads: 3, sizeThreshold: 1000 });
    expect(s.retryDelays).toEqual([0, 10]);
    const bad = normalizeSettings({
      chunkSize: -1,
      parallelUploads: 0,
      sizeThreshold: -5,
      retryDelays: ['x' as any]
    });
    expect(bad).toEqual(DEFAULT_SETTINGS);
    expect(normalizeSettings({ chunkSize: Infinity }).chunkSize).toBe(8 * MiB);
  });
  it('never lets the smallest chunk exceed the chunk size', () => {
    expect(normalizeSettings({ chunkSize: 1024 }).minChunkSize).toBe(1024);
  });
});

describe('paths and metadata', () => {
  it('normalizes the folder the browser shows', () => {
    expect(normalizeFolder('')).toBe('');
    expect(normalizeFolder('/')).toBe('');
    expect(normalizeFolder('data/raw/')).toBe('data/raw');
    expect(normalizeFolder('RTC:data//x')).toBe('data/x');
    expect(normalizeFolder('./a')).toBe('a');
    expect(normalizeFolder(undefined)).toBe('');
    expect(joinPath('', 'a.csv')).toBe('a.csv');
    expect(joinPath('d', 'a.csv')).toBe('d/a.csv');
  });
  it('builds tus metadata', () => {
    expect(buildMetadata({ name: 'a.csv', type: 'text/csv' }, 'data')).toEqual({
      filename: 'a.csv',
      path: 'data',
      filetype: 'text/csv'
    });
    expect(buildMetadata({ name: 'b' }, '', true)).toEqual({
      filename: 'b',
      path: '',
      filetype: 'application/octet-stream',
      overwrite: 'true'
    });
  });
  it('fingerprints include endpoint and folder, and parse back', () => {
    const f = { name: 'we|ird.bin', type: '', size: 42, lastModified: 7 };
    const a = fingerprint(f, 'http://h/api/tus/uploads', 'x');
    expect(a).not.toBe(fingerprint(f, 'http://h/api/tus/uploads', 'y'));
    expect(a).not.toBe(fingerprint(f, 'http://other/api/tus/uploads', 'x'));
    expect(parseFingerprint(a)).toEqual({
      endpoint: 'http://h/api/tus/uploads',
      folder: 'x',
      name: 'we|ird.bin',
      size: 42,
      lastModified: 7
    });
    expect(parseFingerprint('tus-br-a-b')).toBeNull();
  });
});

describe('authentication', () => {
  it('echoes the _xsrf cookie and the token', () => {
    const cookies = 'a=1; _xsrf=2%7Cabc; other=3';
    expect(getCookie(cookies, '_xsrf')).toBe('2|abc');
    expect(getCookie(cookies, 'missing')).toBeUndefined();
    expect(authHeaders(cookies, 'tok')).toEqual({
      'X-XSRFToken': '2|abc',
      Authorization: 'token tok'
    });
    expect(authHeaders('', '')).toEqual({});
  });
});

describe('failures', () => {
  it('classifies responses', () => {
    expect(classifyFailure('POST', 409, true)).toBe('clash');
    expect(classifyFailure('PATCH', 409, true)).toBe('busy');
    expect(classifyFailure('PATCH', 413, false)).toBe('too-large-chunk');
    expect(classifyFailure('POST', 413, true)).toBe('too-large-file');
    expect(classifyFailure('PATCH', 423, true)).toBe('busy');
    expect(classifyFailure('PATCH', 500, true)).toBe('server-error');
    expect(classifyFailure('PATCH', 502, false)).toBe('server-gone');
    expect(classifyFailure('PATCH', 503, true)).toBe('server-error');
    expect(classifyFailure('PATCH', undefined, false)).toBe('network');
    expect(classifyFailure('PATCH', 404, true)).toBe('gone');
    expect(classifyFailure('PATCH', 410, true)).toBe('gone');
    expect(classifyFailure('PATCH', 404, false)).toBe('server-gone');
    expect(classifyFailure('POST', 401, false)).toBe('unauthorized');
    expect(classifyFailure('POST', 403, true)).toBe('forbidden');
    expect(classifyFailure('POST', 400, true)).toBe('refused');
    expect(classifyFailure('HEAD', 302, false)).toBe('server-gone');
  });
  it('retries what time may fix, and only that', () => {
    const retried = ['network', 'server-gone', 'server-error', 'busy', 'stalled'] as const;
    const final = [
      'clash',
      'too-large-chunk',
      'too-large-file',
      'gone',
      'unauthorized',
      'forbidden',
      'refused',
      'unreadable'
    ] as const;
    retried.forEach(k => expect(shouldRetry(k)).toBe(true));
    final.forEach(k => expect(shouldRetry(k)).toBe(false));
  });
  it('backs off exponentially up to 30 s, for ever', () => {
    const waits = Array.from({ length: 12 }, (_, i) => retryDelay(i));
    expect(waits).toEqual([
      0, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000, 30000, 30000, 30000
    ]);
    expect(retryDelay(1e6)).toBe(MAX_RETRY_DELAY);
    expect(retryDelay(0, [])).toBe(2000);
    expect(retryDelay(2, [0, 500])).toBe(2000);
    expect(retryDelay(0, [90_000])).toBe(MAX_RETRY_DELAY);
  });
  it('goes to the common proxy limit after a 413, then halves down to a floor', () => {
    let c: number | null = 8 * MiB;
    const seen: number[] = [];
    while (c !== null) {
      seen.push(c);
      c = chunkAfter413(c, 256 * 1024);
    }
    // One refused request behind nginx's default 1 MiB limit, not three.
    expect(seen).toEqual([8 * MiB, COMMON_PROXY_LIMIT, MiB / 2, 256 * 1024]);
    expect(chunkAfter413(3 * MiB, 2 * MiB)).toBe(2 * MiB);
    expect(chunkAfter413(MiB, MiB)).toBeNull();
    // A 700 KiB file sent whole: the body was 700 KiB, so the next is 350 KiB.
    expect(chunkAfter413(bodySize(8 * MiB, 0, 700 * 1024), 64 * 1024)).toBe(350 * 1024);
  });
  it("reads the server's chunk limit from its headers", () => {
    const from = (h: Record<string, string>) => (name: string) => h[name] ?? null;
    expect(serverChunkLimit(from({}))).toBeNull();
    expect(serverChunkLimit(from({ 'Jupyter-Tus-Max-Chunk-Size': '1048576' }))).toBe(MiB);
    expect(serverChunkLimit(from({ 'Upload-Limit': 'max-size=5000, max-append-size=2048' }))).toBe(
      2048
    );
    expect(serverChunkLimit(from({ 'Upload-Limit': 'max-size=5000' }))).toBeNull();
    expect(serverChunkLimit(from({ 'Jupyter-Tus-Max-Chunk-Size': 'lots' }))).toBeNull();
    expect(bodySize(8 * MiB, 10 * MiB, 12 * MiB)).toBe(2 * MiB);
  });
  it('says why in plain words', () => {
    expect(failureMessage('forbidden', { folder: 'data', detail: 'read-only' })).toBe(
      'no permission to upload to data/: read-only'
    );
    expect(failureMessage('forbidden', { folder: '' })).toBe('no permission to upload to /');
    expect(failureMessage('refused', { status: 400 })).toBe('the server refused the upload (400)');
    expect(failureMessage('network')).toBe('connection lost');
    expect(failureMessage('server-error', { status: 500 })).toBe('server error (500)');
  });
});

describe('status lines', () => {
  const base: IStatusSource = {
    state: 'uploading',
    sent: 12 * MiB,
    size: 40 * MiB,
    folder: 'data',
    path: 'data/x.csv',
    rate: 0,
    error: '',
    note: '',
    chunkNote: '',
    retryReason: '',
    retryAt: null,
    offline: false,
    landedPath: null,
    hasHandle: false,
    question: ''
  };
  const line = (s: Partial<IStatusSource>, now = 0) => statusLine({ ...base, ...s }, now);
  it('says the same thing the same way in every state', () => {
    expect(line({})).toBe('30% · 12 MiB of 40 MiB');
    expect(line({ rate: 4 * MiB })).toBe('30% · 12 MiB of 40 MiB · 4.0 MiB/s · 7s left');
    expect(line({ state: 'retrying', retryReason: 'connection lost', retryAt: 12_000 })).toBe(
      'connection lost, retrying in 12s · 30% · 12 MiB of 40 MiB'
    );
    expect(line({ state: 'retrying', retryReason: 'connection lost' })).toBe(
      'connection lost, retrying now · 30% · 12 MiB of 40 MiB'
    );
    expect(line({ state: 'retrying', offline: true })).toBe(
      'offline, waiting for the network · 30% · 12 MiB of 40 MiB'
    );
    expect(line({ state: 'paused' })).toBe('paused · 30% · 12 MiB of 40 MiB');
    expect(line({ state: 'failed', error: 'no permission to upload to data/' })).toBe(
      'failed · 30% · no permission to upload to data/'
    );
    expect(line({ state: 'done', sent: 40 * MiB })).toBe('done · 40 MiB → data/x.csv');
    expect(line({ state: 'done', landedPath: 'data/x (1).csv' })).toBe(
      'done · 40 MiB → data/x (1).csv (the name was taken)'
    );
    expect(line({ state: 'cancelled', note: 'resumed at 1 MiB' })).toBe('cancelled');
    expect(line({ state: 'interrupted' })).toBe(
      'interrupted at 30% · 12 MiB of 40 MiB → data/ · Resume and pick the file again'
    );
    expect(line({ state: 'interrupted', hasHandle: true, folder: '' })).toBe(
      'interrupted at 30% · 12 MiB of 40 MiB → / · click Resume'
    );
    expect(line({ state: 'queued', question: 'x.csv already exists: overwrite?' })).toBe(
      'x.csv already exists: overwrite?'
    );
    expect(line({ note: 'resumed at 3.0 MiB', chunkNote: 'chunks of 1.0 MiB (proxy limit)' })).toBe(
      '30% · 12 MiB of 40 MiB · resumed at 3.0 MiB · chunks of 1.0 MiB (proxy limit)'
    );
  });
});

describe('rate and ETA', () => {
  it('measures over a sliding window', () => {
    const m = new RateMeter(5000);
    expect(m.rate).toBe(0);
    m.add(0, 0);
    m.add(100, 100);
    expect(m.rate).toBe(0); // too short to tell
    m.add(1000, 1000);
    expect(m.rate).toBeCloseTo(1000);
    expect(m.eta(5000)).toBeCloseTo(5);
    for (let t = 2000; t <= 20000; t += 1000) {
      m.add(t, 1000 + (t - 1000) * 10); // speeds up to 10 kB/s
    }
    expect(m.rate).toBeCloseTo(10000);
    m.reset();
    expect(m.eta(1)).toBeNull();
  });
  it('formats', () => {
    expect(formatBytes(0)).toBe('0 B');
    expect(formatBytes(1536)).toBe('1.5 KiB');
    expect(formatBytes(100 * MiB)).toBe('100 MiB');
    expect(formatBytes(52_100)).toBe('51 KiB');
    expect(formatBytes(9.96 * 1024)).toBe('10 KiB');
    expect(formatBytes(1023.9 * 1024)).toBe('1.0 MiB');
    expect(formatPercent(0.2999)).toBe('29%');
    expect(formatPercent(1)).toBe('100%');
    expect(formatPercent(NaN)).toBe('0%');
    expect(formatDuration(null)).toBe('–');
    expect(formatDuration(42)).toBe('42s');
    expect(formatDuration(125)).toBe('2m 5s');
    expect(formatDuration(3 * 3600 + 120)).toBe('3h 2m');
  });
});

describe('landed path', () => {
  it('decodes the header the server sends', () => {
    expect(parseLandedPath('dir%20%C3%A9/race%20%281%29.txt')).toBe('dir é/race (1).txt');
    expect(parseLandedPath(undefined)).toBeNull();
    expect(parseLandedPath('')).toBeNull();
    expect(parseLandedPath('%E0%A4%A')).toBeNull();
  });
  it('says when the name was taken', () => {
    expect(describeLanding('data/a.csv', 'data/a.csv')).toBe('data/a.csv');
    expect(describeLanding('data/a.csv', null)).toBe('data/a.csv');
    expect(describeLanding('data/a.csv', 'data/a (1).csv')).toBe(
      'data/a (1).csv (the name was taken)'
    );
  });
});
