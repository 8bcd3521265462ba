import {
  DEFAULT_SETTINGS,
  MiB,
  RateMeter,
  authHeaders,
  buildMetadata,
  classifyFailure,
  describeLanding,
  fingerprint,
  formatBytes,
  formatDuration,
  getCookie,
  halveChunk,
  joinPath,
  normalizeFolder,
  normalizeSettings,
  parseFingerprint,
  parseLandedPath,
  shouldRetry
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
    expect(classifyFailure('PATCH', 409, true)).toBe('retry');
    expect(classifyFailure('PATCH', 413, false)).toBe('too-large-chunk');
    expect(classifyFailure('POST', 413, true)).toBe('too-large-file');
    expect(classifyFailure('PATCH', 423, true)).toBe('retry');
    expect(classifyFailure('PATCH', 502, false)).toBe('retry');
    expect(classifyFailure('PATCH', undefined, false)).toBe('retry');
    expect(classifyFailure('PATCH', 404, true)).toBe('gone');
    expect(classifyFailure('PATCH', 404, false)).toBe('server-gone');
    expect(shouldRetry(classifyFailure('PATCH', 404, false))).toBe(true);
    expect(shouldRetry(classifyFailure('PATCH', 404, true))).toBe(false);
    expect(shouldRetry(classifyFailure('POST', 409, true))).toBe(false);
    expect(shouldRetry(classifyFailure('PATCH', 413, false))).toBe(false);
    expect(classifyFailure('POST', 403, true)).toBe('forbidden');
    expect(classifyFailure('POST', 400, true)).toBe('forbidden');
  });
  it('halves the chunk size down to a floor after a 413', () => {
    let c: number | null = 8 * MiB;
    const seen: number[] = [];
    while (c !== null) {
      seen.push(c);
      c = halveChunk(c, 1 * MiB);
    }
    expect(seen).toEqual([8 * MiB, 4 * MiB, 2 * MiB, 1 * MiB]);
    expect(halveChunk(Infinity, MiB)).toBe(4 * MiB);
    expect(halveChunk(3 * MiB, 2 * MiB)).toBe(2 * MiB);
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
    expect(describeLanding('data/a.csv', 'data/a.csv')).toBe('/data/a.csv');
    expect(describeLanding('data/a.csv', null)).toBe('/data/a.csv');
    expect(describeLanding('data/a.csv', 'data/a (1).csv')).toBe(
      '/data/a (1).csv (the name was taken)'
    );
  });
});
