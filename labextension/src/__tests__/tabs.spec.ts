/**
 * What tabs (and front ends) of one browser share: one driver per upload (Web Locks),
 * its progress shown by the others (BroadcastChannel), and the chunk size a proxy let
 * through (localStorage), with fake locks, channels and storage.
 */
import { DEFAULT_SETTINGS, IUploadSettings, statusLine } from '../core';
import { IChunkMemory, StorageChunkMemory, chunkMemoryKey, parseChunkSize } from '../shared';
import { TusUploader, UploadItem } from '../uploader';
import { FakeChannels, FakeLocks, fakeTabs } from './fakeTabs';
import { ENDPOINT, FakeTusServer, MemoryUrlStorage, fakeFile, fakeReader } from './fakes';

const KiB = 1024;

/** One browser: a server, page storage, locks, channels and remembered chunk sizes. */
interface IBrowser {
  server: FakeTusServer;
  storage: MemoryUrlStorage;
  locks: FakeLocks;
  channels: FakeChannels;
  chunkMemory: IChunkMemory;
}

function browser(): IBrowser {
  return {
    server: new FakeTusServer(),
    storage: new MemoryUrlStorage(),
    locks: new FakeLocks(),
    channels: new FakeChannels(),
    chunkMemory: new StorageChunkMemory(new MapStorage())
  };
}

class MapStorage {
  map = new Map<string, string>();
  getItem(key: string): string | null {
    return this.map.get(key) ?? null;
  }
  setItem(key: string, value: string): void {
    this.map.set(key, value);
  }
}

interface ITab {
  uploader: TusUploader;
  name: string;
  landed: UploadItem[];
  asked: string[];
  states: string[];
}

/** An uploader in a tab of `b`; its requests carry `X-Tab: name`. `listing`: 'stale'
 * when the tab's file browser does not show files that landed since it was listed. */
function tab(
  b: IBrowser,
  name: string,
  settings: Partial<IUploadSettings> = {},
  listing: 'live' | 'stale' = 'live'
): ITab {
  const shown = new Set(b.server.files.keys());
  const t: ITab = { name, landed: [], asked: [], states: [] } as unknown as ITab;
  t.uploader = new TusUploader({
    endpoint: ENDPOINT,
    headers: () => ({ 'X-Tab': name }),
    settings: () => ({ ...DEFAULT_SETTINGS, chunkSize: 16 * KiB, ...settings }),
    confirmOverwrite: async n => {
      t.asked.push(n);
      return false;
    },
    exists: async path => (listing === 'live' ? b.server.files.has(path) : shown.has(path)),
    landed: item => t.landed.push(item),
    httpStack: b.server,
    urlStorage: b.storage,
    fileReader: fakeReader,
    tabs: fakeTabs(b.locks, b.channels),
    chunkMemory: b.chunkMemory
  });
  t.uploader.changed.connect((_, item) => {
    if (item && t.states[t.states.length - 1] !== item.state) {
      t.states.push(item.state);
    }
  });
  return t;
}

function from(b: IBrowser, t: ITab, since = 0) {
  return b.server.requests.slice(since).filter(r => r.headers['X-Tab'] === t.name);
}

async function run(ms = 0): Promise<void> {
  await jest.advanceTimersByTimeAsync(ms);
}

async function until(cond: () => boolean, maxMs = 10 * 60_000, step = 10): Promise<void> {
  for (let t = 0; t <= maxMs; t += step) {
    if (cond()) {
      return;
    }
    await run(step);
  }
  throw new Error('condition not met in time');
}

function sameBytes(a: Uint8Array | undefined, file: File): boolean {
  const b = (file as unknown as { bytes: Uint8Array }).bytes;
  return !!a && a.length === b.length && a.every((v, i) => v === b[i]);
}

beforeEach(() => {
  jest.useFakeTimers();
  jest.spyOn(console, 'debug').mockImplementation(() => undefined);
  jest.spyOn(console, 'info').mockImplementation(() => undefined);
  jest.spyOn(console, 'warn').mockImplementation(() => undefined);
});

afterEach(() => {
  jest.useRealTimers();
  jest.restoreAllMocks();
});

describe('one driver per upload across tabs', () => {
  it('a second tab shows the upload running in the first, sends nothing, and takes over when the first is gone', async () => {
    const b = browser();
    b.server.latency = 50;
    const one = tab(b, 'one');
    const two = tab(b, 'two');
    const file = fakeFile('survey.bin', 320 * KiB);
    const first = one.uploader.upload(file, 'data');
    await until(() => b.server.of('PATCH').length >= 3);

    // The same file into the same folder in the other tab.
    let secondDone: boolean | null = null;
    void two.uploader.upload(file, 'data').then(v => (secondDone = v));
    const mirror = () => two.uploader.items[0];
    await until(() => mirror()?.state === 'elsewhere');
    const mark = b.server.requests.length;
    await until(() => mirror().sent > 4 * 16 * KiB);
    expect(mirror().sent).toBeLessThanOrEqual(one.uploader.items[0].sent);
    expect(statusLine(mirror(), Date.now())).toMatch(
      /^running in another tab · \d+% · \d+ KiB of 320 KiB$/
    );
    expect(from(b, two)).toHaveLength(0); // never a request against the driver's upload

    // The first tab goes away half way (closed or reloaded): the second takes over.
    await until(() => b.server.of('PATCH').length >= 8);
    one.uploader.dispose();
    void first;
    await until(() => secondDone !== null);
    expect(secondDone).toBe(true);
    const taken = from(b, two, mark);
    expect(taken.filter(r => r.method === 'POST')).toHaveLength(0); // resumed, not restarted
    expect(taken[0].method).toBe('HEAD');
    expect(b.server.requests.filter(r => r.status === 409)).toHaveLength(0);
    expect(sameBytes(b.server.files.get('data/survey.bin'), file)).toBe(true);
    expect(two.states).toEqual(['queued', 'elsewhere', 'queued', 'uploading', 'done']);
    expect(b.locks.held.size).toBe(0);
  });

  it('when the driver lands the file, the other tab shows it done without a request', async () => {
    const b = browser();
    const one = tab(b, 'one');
    const two = tab(b, 'two');
    const file = fakeFile('notes.bin', 96 * KiB);
    const first = one.uploader.upload(file, '');
    await until(() => b.server.of('PATCH').length >= 1);
    const second = two.uploader.upload(file, '');
    await until(() => one.uploader.items[0].state === 'done');
    await until(() => two.uploader.items[0].state === 'done');
    expect(await first).toBe(true);
    expect(await second).toBe(true);
    expect(from(b, two)).toHaveLength(0);
    expect(two.asked).toHaveLength(0); // no overwrite question about its own file
    expect(two.landed).toHaveLength(1);
    expect(statusLine(two.uploader.items[0], Date.now())).toBe('done · 96 KiB → notes.bin');
    expect(b.locks.held.size).toBe(0);
  });

  it("when the lock comes before the driver's last message, the waiting tab still knows the file landed and sends nothing", async () => {
    const b = browser();
    b.server.latency = 50;
    b.channels.delay = 20;
    const one = tab(b, 'one');
    const two = tab(b, 'two', {}, 'stale');
    const file = fakeFile('race.bin', 96 * KiB);
    const first = one.uploader.upload(file, '');
    await until(() => b.server.of('PATCH').length >= 1);
    let second: boolean | null = null;
    void two.uploader.upload(file, '').then(v => (second = v));
    await until(() => two.uploader.items[0]?.state === 'elsewhere');
    await until(() => second !== null);
    expect(await first).toBe(true);
    expect(second).toBe(true);
    expect(two.uploader.items[0].state).toBe('done');
    expect(from(b, two)).toHaveLength(0);
    expect(two.asked).toHaveLength(0);
    expect(two.landed).toHaveLength(1);
    expect(b.locks.held.size).toBe(0);
  });

  it('a driver that landed the file before the question reached it says so when asked again', async () => {
    const b = browser();
    b.server.latency = 50;
    b.channels.delay = 200; // the first question arrives once the upload is over
    const one = tab(b, 'one');
    const two = tab(b, 'two', {}, 'stale');
    const file = fakeFile('quick.bin', 24 * KiB);
    const first = one.uploader.upload(file, '');
    await until(() => b.server.requests.length >= 1);
    let second: boolean | null = null;
    void two.uploader.upload(file, '').then(v => (second = v));
    await until(() => second !== null);
    expect(await first).toBe(true);
    expect(second).toBe(true);
    expect(two.uploader.items[0].state).toBe('done');
    expect(from(b, two)).toHaveLength(0);
    expect(b.locks.held.size).toBe(0);
  });

  it('a tab where the file landed earlier does not call a later upload of it done', async () => {
    const b = browser();
    b.server.latency = 50;
    const one = tab(b, 'one');
    const two = tab(b, 'two');
    const three = tab(b, 'three');
    const file = fakeFile('again.bin', 96 * KiB);
    let first: boolean | null = null;
    void one.uploader.upload(file, 'data').then(v => (first = v));
    await until(() => first !== null);
    expect(one.uploader.items[0].state).toBe('done'); // its row stays, done
    await run(5000);

    // The same file again from another tab (replacing it), and a third tab drops it too.
    let second: boolean | null = null;
    void two.uploader.upload(file, 'data', { overwrite: true }).then(v => (second = v));
    await until(() => b.server.of('PATCH').length >= 8);
    const mark = b.server.requests.length;
    let third: boolean | null = null;
    let driverWhenDone = '';
    three.uploader.changed.connect((_, item) => {
      if (item?.state === 'done' && !driverWhenDone) {
        driverWhenDone = two.uploader.items[0].state;
      }
    });
    void three.uploader.upload(file, 'data').then(v => (third = v));
    await until(() => second !== null && third !== null);
    expect(second).toBe(true);
    expect(third).toBe(true);
    expect(driverWhenDone).toBe('done'); // not while the second upload still ran
    expect(from(b, three, mark)).toHaveLength(0);
    expect(b.locks.held.size).toBe(0);
  });

  it('a view closed while it waits for the last word takes nothing over', async () => {
    const b = browser();
    b.server.latency = 50;
    const one = tab(b, 'one');
    const two = tab(b, 'two');
    const three = tab(b, 'three');
    const file = fakeFile('left.bin', 96 * KiB);
    void one.uploader.upload(file, '');
    await until(() => b.server.of('PATCH').length >= 1);
    void two.uploader.upload(file, '');
    await until(() => two.uploader.items[0]?.state === 'elsewhere');
    let third: boolean | null = null;
    void three.uploader.upload(file, '').then(v => (third = v));
    await until(() => three.uploader.items[0]?.state === 'elsewhere');
    const mark = b.server.requests.length;
    one.uploader.dispose(); // gone without a word
    await until(() => !!two.uploader.items[0].releaseLock); // the lock is two's: it waits
    two.uploader.dispose(); // e.g. the widget's output cleared meanwhile
    await until(() => third !== null);
    expect(third).toBe(true); // the third took it over
    await run(2000);
    expect(from(b, two, mark)).toHaveLength(0);
    expect(sameBytes(b.server.files.get('left.bin'), file)).toBe(true);
    expect(b.locks.held.size).toBe(0);
  });

  it('when the driver goes away, a third tab follows the tab that took over', async () => {
    const b = browser();
    b.server.latency = 50;
    const one = tab(b, 'one');
    const two = tab(b, 'two');
    const three = tab(b, 'three');
    const file = fakeFile('relay.bin', 320 * KiB);
    void one.uploader.upload(file, '');
    await until(() => b.server.of('PATCH').length >= 3);
    let second: boolean | null = null;
    void two.uploader.upload(file, '').then(v => (second = v));
    let third: boolean | null = null;
    void three.uploader.upload(file, '').then(v => (third = v));
    await until(() => three.uploader.items[0]?.state === 'elsewhere');
    await until(() => three.uploader.items[0].sent > 0);
    one.uploader.dispose(); // gone without a word: two takes over, three waits on
    const before = three.uploader.items[0].sent;
    const seen: number[] = []; // what three showed while two sent
    three.uploader.changed.connect((_, item) => {
      if (item && two.uploader.items[0].state === 'uploading') {
        seen.push(item.sent);
      }
    });
    await until(() => second !== null && third !== null);
    expect(second).toBe(true);
    expect(third).toBe(true);
    expect(seen.some(sent => sent > before && sent < file.size)).toBe(true);
    expect(b.locks.held.size).toBe(0);
  });

  it('a drop just after the driver landed the file, its lock not yet let go, sends nothing', async () => {
    const b = browser();
    b.server.latency = 50;
    b.channels.delay = 20;
    const one = tab(b, 'one');
    const two = tab(b, 'two', {}, 'stale');
    const file = fakeFile('just.bin', 96 * KiB);
    let second: Promise<boolean> | null = null;
    one.uploader.changed.connect((_, item) => {
      if (item?.state === 'done' && !second) {
        // A moment after the landing, before the driver's lock is let go.
        jest.setSystemTime(Date.now() + 5);
        second = two.uploader.upload(file, '');
      }
    });
    let first: boolean | null = null;
    void one.uploader.upload(file, '').then(v => (first = v));
    await until(() => first !== null);
    expect(first).toBe(true);
    let result: boolean | null = null;
    void second!.then(v => (result = v));
    await until(() => result !== null);
    expect(result).toBe(true);
    expect(two.uploader.items[0].state).toBe('done');
    expect(from(b, two)).toHaveLength(0);
    expect(two.asked).toHaveLength(0);
    expect(b.locks.held.size).toBe(0);
  });

  it('Cancel in the waiting tab only stops waiting: the driver goes on', async () => {
    const b = browser();
    b.server.latency = 50;
    const one = tab(b, 'one');
    const two = tab(b, 'two');
    const file = fakeFile('big.bin', 160 * KiB);
    const first = one.uploader.upload(file, '');
    await until(() => b.server.of('PATCH').length >= 1);
    const second = two.uploader.upload(file, '');
    await until(() => two.uploader.items[0]?.state === 'elsewhere');
    await two.uploader.cancel(two.uploader.items[0]);
    expect(await second).toBe(false);
    expect(two.uploader.items[0].state).toBe('cancelled');
    await until(() => one.uploader.items[0].state === 'done');
    expect(await first).toBe(true);
    expect(b.server.of('DELETE')).toHaveLength(0);
    expect(from(b, two)).toHaveLength(0);
    expect(sameBytes(b.server.files.get('big.bin'), file)).toBe(true);
  });

  it('a tab opened while another uploads lists that upload as running there, then interrupted when it is gone', async () => {
    const b = browser();
    b.server.latency = 50;
    const one = tab(b, 'one');
    const file = fakeFile('moving.bin', 320 * KiB);
    void one.uploader.upload(file, 'data');
    await until(() => b.server.of('PATCH').length >= 2);
    const two = tab(b, 'two');
    await two.uploader.restore();
    const row = two.uploader.items[0];
    expect(row.state).toBe('elsewhere');
    await until(() => row.sent > 0);
    expect(from(b, two)).toHaveLength(0); // not even a HEAD
    one.uploader.dispose();
    await until(() => row.state === 'interrupted');
    expect(b.locks.held.size).toBe(0);
  });

  it('a tab opened while another uploads shows it done when it lands, even when the lock comes before the news', async () => {
    const b = browser();
    b.server.latency = 50;
    b.channels.delay = 20;
    const one = tab(b, 'one');
    const file = fakeFile('landing.bin', 96 * KiB);
    const first = one.uploader.upload(file, 'data');
    await until(() => b.server.of('PATCH').length >= 1);
    const two = tab(b, 'two');
    await two.uploader.restore();
    const row = two.uploader.items[0];
    expect(row.state).toBe('elsewhere');
    await until(() => one.uploader.items[0].state === 'done');
    expect(await first).toBe(true);
    await until(() => row.state !== 'elsewhere');
    expect(row.state).toBe('done');
    expect(from(b, two)).toHaveLength(0);
    expect(b.locks.held.size).toBe(0);
  });

  it('without Web Locks every uploader drives its own uploads, as before', async () => {
    const b = browser();
    const alone = new TusUploader({
      endpoint: ENDPOINT,
      headers: () => ({}),
      settings: () => ({ ...DEFAULT_SETTINGS, chunkSize: 16 * KiB }),
      confirmOverwrite: async () => false,
      httpStack: b.server,
      urlStorage: b.storage,
      fileReader: fakeReader,
      tabs: null
    });
    const done = alone.upload(fakeFile('solo.bin', 40 * KiB), '');
    await until(() => alone.items[0].state === 'done');
    expect(await done).toBe(true);
  });
});

describe('small files', () => {
  it('go in one request each: the creation carries the file (creation-with-upload)', async () => {
    const b = browser();
    const t = tab(b, 'one');
    const files = Array.from({ length: 20 }, (_, i) => fakeFile(`small-${i}.csv`, 10 * KiB));
    const all = Promise.all(files.map(f => t.uploader.upload(f, 'data')));
    await until(() => t.uploader.items.every(i => i.state === 'done'));
    expect(await all).toEqual(files.map(() => true));
    expect(b.server.requests.map(r => r.method)).toEqual(files.map(() => 'POST'));
    files.forEach(f => expect(sameBytes(b.server.files.get(`data/${f.name}`), f)).toBe(true));
    expect(t.landed).toHaveLength(20);
    expect(t.uploader.items.map(i => i.landedPath).sort()).toEqual(
      files.map(f => `data/${f.name}`).sort()
    );
  });

  it('a drop of many lists the folder once, sends six at a time, and says once that files landed there', async () => {
    const b = browser();
    b.server.files.set('data/taken.csv', new Uint8Array([1]));
    const listed: string[] = [];
    const settled: string[] = [];
    const asked: string[] = [];
    const uploader = new TusUploader({
      endpoint: ENDPOINT,
      headers: () => ({}),
      settings: () => ({ ...DEFAULT_SETTINGS, chunkSize: 16 * KiB }),
      confirmOverwrite: async name => {
        asked.push(name);
        return true;
      },
      listFolder: async folder => {
        listed.push(folder);
        return [...b.server.files.keys()]
          .filter(p => p.startsWith(`${folder}/`))
          .map(p => p.slice(folder.length + 1));
      },
      folderLanded: folder => settled.push(folder),
      httpStack: b.server,
      urlStorage: b.storage,
      fileReader: fakeReader,
      tabs: null
    });
    let most = 0;
    uploader.changed.connect(() => {
      const sending = uploader.items.filter(i => ['uploading', 'retrying'].includes(i.state));
      most = Math.max(most, sending.length);
    });
    const names = [...Array.from({ length: 30 }, (_, i) => `f${i}.csv`), 'taken.csv'];
    const files = names.map(n => fakeFile(n, 2 * KiB));
    const all = Promise.all(files.map(f => uploader.upload(f, 'data')));
    await until(() => uploader.items.every(i => i.state === 'done'));
    expect(await all).toEqual(files.map(() => true));
    await run(100);
    expect(listed).toEqual(['data']);
    expect(asked).toEqual(['taken.csv']);
    expect(settled).toEqual(['data']);
    // Each goes in one request: at most 3 × 6 sending at a time, the others wait their turn.
    expect(most).toBe(18);
    expect(b.server.requests.map(r => r.method)).toEqual(files.map(() => 'POST'));
    expect(sameBytes(b.server.files.get('data/taken.csv'), files[30])).toBe(true);

    // The next drop lists again (a file may have come or gone meanwhile).
    const next = uploader.upload(fakeFile('later.csv', KiB), 'data');
    await until(() => uploader.items[0].state === 'done');
    expect(await next).toBe(true);
    await run(100);
    expect(listed).toEqual(['data', 'data']);
    expect(settled).toEqual(['data', 'data']);
  });

  it('uploads that overlap in time make one batch, with a total', async () => {
    const b = browser();
    b.server.latency = 20;
    const t = tab(b, 'one');
    const files = Array.from({ length: 12 }, (_, i) => fakeFile(`b${i}.csv`, 10 * KiB));
    const first = Promise.all(files.map(f => t.uploader.upload(f, 'data')));
    await run(0);
    const batch = t.uploader.items[0].batch!;
    expect(t.uploader.items.every(i => i.batch === batch)).toBe(true);
    expect(batch.files).toBe(12);
    expect(batch.summary).toBe('0 of 12 files · 0% · 0 B of 120 KiB');
    const fractions: number[] = [];
    t.uploader.changed.connect(() => fractions.push(batch.fraction));
    // One more while the batch runs joins it.
    const late = t.uploader.upload(fakeFile('late.csv', 8 * KiB), 'data');
    await until(() => !batch.busy);
    expect(await first).toEqual(files.map(() => true));
    expect(await late).toBe(true);
    expect(batch.summary).toBe('13 of 13 files · 100% · 128 KiB of 128 KiB');
    expect(fractions).toEqual([...fractions].sort((x, y) => x - y)); // never backwards
    // A file dropped after it finished starts a new batch.
    const next = t.uploader.upload(fakeFile('next.csv', KiB), 'data');
    await until(() => t.uploader.items[0].state === 'done');
    expect(await next).toBe(true);
    expect(t.uploader.items[0].batch).not.toBe(batch);
    expect(t.uploader.items[0].batch!.files).toBe(1);
  });

  it('one larger than a chunk is created empty, then sent in chunks', async () => {
    const b = browser();
    const t = tab(b, 'one');
    const file = fakeFile('bigger.bin', 40 * KiB);
    const done = t.uploader.upload(file, '');
    await until(() => t.uploader.items[0].state === 'done');
    expect(await done).toBe(true);
    expect(b.server.requests.map(r => [r.method, r.bodySize])).toEqual([
      ['POST', 0],
      ['PATCH', 16 * KiB],
      ['PATCH', 16 * KiB],
      ['PATCH', 8 * KiB]
    ]);
  });
});

describe('the chunk size a proxy let through is learned once', () => {
  function behindProxy(b: IBrowser, limit: number): void {
    b.server.rules.push(r =>
      r.bodySize > limit
        ? { status: 413, body: '<html>413 Request Entity Too Large</html>' }
        : undefined
    );
  }

  it('is remembered per endpoint: the panel, the widget and the page after a reload start with it', async () => {
    const b = browser();
    behindProxy(b, 40 * KiB);
    const panel = tab(b, 'panel', { chunkSize: 256 * KiB, minChunkSize: 8 * KiB });
    const file = fakeFile('first.bin', 300 * KiB);
    const done = panel.uploader.upload(file, '');
    await until(() => panel.uploader.items[0].state === 'done');
    expect(await done).toBe(true);
    const refused = b.server.requests.filter(r => r.status === 413).map(r => r.bodySize);
    expect(refused).toEqual([256, 128, 64].map(k => k * KiB)); // halved from the real bodies
    expect(panel.uploader.learnedChunkSize).toBe(32 * KiB);
    const storage = (b.chunkMemory as unknown as { _storage: MapStorage })._storage;
    expect(parseChunkSize(storage.getItem(chunkMemoryKey(ENDPOINT)))).toBe(32 * KiB);

    // The notebook widget in the same page, and a new page after a reload (a new memory
    // over the same storage), start their first chunk at the size the proxy accepted.
    for (const [name, memory] of [
      ['widget', b.chunkMemory],
      ['reloaded', new StorageChunkMemory(storage)]
    ] as const) {
      const other = tab({ ...b, chunkMemory: memory }, name, {
        chunkSize: 256 * KiB,
        minChunkSize: 8 * KiB
      });
      const mark = b.server.requests.length;
      const next = fakeFile(`${name}.bin`, 100 * KiB);
      const landed = other.uploader.upload(next, '');
      await until(() => other.uploader.items[0].state === 'done');
      expect(await landed).toBe(true);
      const sent = b.server.requests.slice(mark);
      expect(sent.filter(r => r.status === 413)).toHaveLength(0);
      expect(sent.filter(r => r.method === 'PATCH')[0].bodySize).toBe(32 * KiB);
      expect(sameBytes(b.server.files.get(`${name}.bin`), next)).toBe(true);
    }
  });

  it('is kept per endpoint: another server starts with the configured chunk size', () => {
    const memory = new StorageChunkMemory(new MapStorage());
    memory.set(ENDPOINT, 64 * KiB);
    memory.set(ENDPOINT, 128 * KiB); // never grows back by itself
    expect(memory.get(ENDPOINT)).toBe(64 * KiB);
    expect(memory.get('http://other.test/api/tus/uploads')).toBeNull();
    expect(parseChunkSize('garbage')).toBeNull();
    expect(parseChunkSize('-5')).toBeNull();
  });

  it('a small file refused whole in its creation request is halved from its real size', async () => {
    const b = browser();
    behindProxy(b, 20 * KiB);
    const t = tab(b, 'one', { chunkSize: 1024 * KiB, minChunkSize: 4 * KiB });
    const file = fakeFile('three.bin', 48 * KiB);
    const done = t.uploader.upload(file, '');
    await until(() => t.uploader.items[0].state === 'done');
    expect(await done).toBe(true);
    const refused = b.server.requests.filter(r => r.status === 413);
    expect(refused.map(r => [r.method, r.bodySize])).toEqual([
      ['POST', 48 * KiB],
      ['PATCH', 24 * KiB]
    ]);
    expect(t.uploader.learnedChunkSize).toBe(12 * KiB);
    expect(sameBytes(b.server.files.get('three.bin'), file)).toBe(true);
  });
});
