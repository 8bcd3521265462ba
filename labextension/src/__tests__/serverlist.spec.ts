/**
 * The server's list of uploads as the Uploads panel shows it: parsing, words, the merge
 * with this page's uploads, the status-bar summary and the dismissed ids.
 */
import {
  DismissedIds,
  FolderUploads,
  announcement,
  doneAnnouncement,
  fetchServerUploads,
  IServerUpload,
  MAX_FINISHED_ROWS,
  folderOf,
  mergeRows,
  parseListing,
  pickedFileMismatch,
  progressSummary,
  serverRowState,
  serverStatusLine
} from '../serverlist';

const MiB = 1024 * 1024;
const NOW = Date.parse('2026-11-29T17:00:00Z');

function upload(over: Partial<IServerUpload> = {}): IServerUpload {
  return {
    id: 'abc',
    url: '/api/tus/uploads/abc',
    filename: 'x.csv',
    destination: 'data/x.csv',
    size: 40 * MiB,
    offset: 12 * MiB,
    state: 'uploading',
    created: '2026-11-29T16:00:00Z',
    last_activity: '2026-11-29T16:50:00Z',
    expires: '2026-11-30T16:50:00Z',
    landed_path: null,
    message: null,
    ...over
  };
}

describe('parseListing', () => {
  it('keeps well-formed uploads and drops the rest', () => {
    const good = upload();
    const parsed = parseListing({
      uploads: [good, { id: 'x' }, { ...good, id: 'y', state: 'exploded' }, null, 'z']
    });
    expect(parsed).toEqual([good]);
    expect(parseListing({})).toEqual([]);
    expect(parseListing(null)).toEqual([]);
  });

  it('takes a missing size as unknown', () => {
    const [u] = parseListing({ uploads: [{ ...upload(), size: null }] });
    expect(u.size).toBeNull();
    expect(serverStatusLine(u, NOW)).toContain('12 MiB of unknown size');
  });
});

describe('fetchServerUploads', () => {
  afterEach(() => {
    delete (globalThis as any).fetch;
  });

  it('asks for only the latest finished uploads when told how many', async () => {
    const asked: string[] = [];
    (globalThis as any).fetch = async (url: string) => {
      asked.push(url);
      return { ok: true, json: async () => ({ uploads: [] }) };
    };
    expect(await fetchServerUploads('/api/tus/uploads', {}, 12)).toEqual([]);
    expect(await fetchServerUploads('/api/tus/uploads', {})).toEqual([]);
    expect(asked).toEqual(['/api/tus/uploads?finished_limit=12', '/api/tus/uploads']);
  });
});

describe('the rows of the server list', () => {
  it('an unfinished upload nobody sends asks for the file again', () => {
    const u = upload();
    expect(folderOf(u)).toBe('data');
    expect(serverRowState(u, NOW)).toBe('interrupted');
    expect(serverStatusLine(u, NOW)).toBe(
      'interrupted at 30% · 12 MiB of 40 MiB → data/ · Resume and pick the file again'
    );
    expect(serverStatusLine(upload({ destination: 'top.bin' }), NOW)).toContain('→ / ·');
  });

  it('one with recent bytes is being sent elsewhere', () => {
    const u = upload({ last_activity: '2026-11-29T16:59:57Z' });
    expect(serverRowState(u, NOW)).toBe('elsewhere');
    expect(serverStatusLine(u, NOW)).toBe(
      'uploading elsewhere · 30% · 12 MiB of 40 MiB · last data 3s ago'
    );
  });

  it('finished ones say where they landed or why not', () => {
    const done = upload({ state: 'done', offset: 40 * MiB, landed_path: 'data/x (1).csv' });
    expect(serverRowState(done, NOW)).toBe('done');
    expect(serverStatusLine(done, NOW)).toBe('done · 40 MiB → data/x (1).csv (the name was taken)');
    const gone = upload({ state: 'gone', message: 'the file was moved, deleted or changed' });
    expect(serverRowState(gone, NOW)).toBe('failed');
    expect(serverStatusLine(gone, NOW)).toBe('gone · the file was moved, deleted or changed');
    const refused = upload({ state: 'refused', message: 'data is a file, not a folder' });
    expect(serverStatusLine(refused, NOW)).toBe('failed · data is a file, not a folder');
  });
});

describe('mergeRows', () => {
  const local = (
    id: number,
    uploadId: string | null,
    path = 'data/x.csv',
    state = 'uploading'
  ) => ({
    id,
    uploadId,
    path,
    size: 40 * MiB,
    state
  });

  it("lists this page's uploads first, in the order started, then the server's others", () => {
    const rows = mergeRows(
      [local(1, 'a'), local(3, 'c'), local(2, 'b')],
      [upload({ id: 'd' }), upload({ id: 'b' }), upload({ id: 'e', state: 'done' })]
    );
    expect(rows.map(r => r.key)).toEqual(['local:3', 'local:2', 'local:1', 'server:d', 'server:e']);
  });

  it('shows every unfinished upload, but only the latest finished ones', () => {
    const done = Array.from({ length: 30 }, (_, i) =>
      upload({
        id: `done${i}`,
        state: 'done',
        last_activity: new Date(NOW - i * 60_000).toISOString()
      })
    );
    const open = Array.from({ length: 15 }, (_, i) => upload({ id: `open${i}` }));
    const rows = mergeRows([], [...done.reverse(), ...open]);
    const keys = rows.map(r => r.key);
    expect(keys.filter(k => k.startsWith('server:open'))).toHaveLength(15);
    expect(keys.filter(k => k.startsWith('server:done'))).toEqual(
      Array.from({ length: MAX_FINISHED_ROWS }, (_, i) => `server:done${MAX_FINISHED_ROWS - 1 - i}`)
    );
  });

  it('matches an upload whose URL is not known yet by destination and size', () => {
    const rows = mergeRows([local(1, null)], [upload({ id: 'new' })]);
    expect(rows.map(r => r.key)).toEqual(['local:1']);
    // …but not a finished one, nor one of another size
    expect(mergeRows([local(1, null)], [upload({ id: 'n', size: 5 })]).length).toBe(2);
  });

  it('leaves out dismissed rows and uploads that are no file', () => {
    const rows = mergeRows(
      [],
      [
        upload({ id: 'gone-away' }),
        upload({ id: 'part', destination: null, state: 'in the store' }),
        upload({ id: 'kept' })
      ],
      new Set(['gone-away'])
    );
    expect(rows.map(r => r.key)).toEqual(['server:kept']);
  });
});

describe('resuming a server upload with a picked file', () => {
  it('takes only the same name and size', () => {
    const u = upload();
    expect(pickedFileMismatch(u, { name: 'x.csv', size: 40 * MiB })).toBe('');
    expect(pickedFileMismatch(u, { name: 'y.csv', size: 40 * MiB })).toBe(
      '"y.csv" is not x.csv: pick the file this upload started with'
    );
    expect(pickedFileMismatch(u, { name: 'x.csv', size: MiB })).toContain(
      'has 1.0 MiB, the upload 40 MiB'
    );
  });
});

describe('progressSummary', () => {
  it('counts running uploads and their bytes', () => {
    expect(progressSummary([{ state: 'done', sent: 1, size: 1 }])).toBeNull();
    expect(
      progressSummary([
        { state: 'uploading', sent: 30, size: 100 },
        { state: 'retrying', sent: 0, size: 100 },
        { state: 'paused', sent: 50, size: 100 }
      ])
    ).toEqual({ count: 2, fraction: 0.15, text: 'Uploading 2 files · 15%' });
    expect(progressSummary([{ state: 'queued', sent: 0, size: 0 }])?.text).toBe(
      'Uploading 1 file · 0%'
    );
  });
});

describe('DismissedIds', () => {
  it('remembers ids across instances, the newest ones', () => {
    const store = new Map<string, string>();
    const storage = {
      getItem: (k: string) => store.get(k) ?? null,
      setItem: (k: string, v: string) => void store.set(k, v)
    };
    const a = new DismissedIds(storage, 'k', 2);
    a.add('1', '2');
    a.add('2', '3');
    expect([...new DismissedIds(storage, 'k', 2).set]).toEqual(['2', '3']);
    store.set('k', 'not json');
    expect(new DismissedIds(storage, 'k').set.size).toBe(0);
    expect(new DismissedIds(null).set.size).toBe(0);
  });
});

describe('what the live region says', () => {
  const item = {
    state: 'uploading',
    name: 'data.csv',
    folder: 'data',
    error: '',
    offline: false,
    retryReason: '',
    fraction: 0.29
  };

  it('says the changes that matter, in the same words as the rows', () => {
    expect(announcement({ ...item, state: 'done' }, 'uploading')).toBe(
      'data.csv uploaded to data/'
    );
    expect(announcement({ ...item, state: 'paused' }, 'uploading')).toBe(
      'Upload of data.csv paused at 29%'
    );
    expect(announcement(item, 'paused')).toBe('Upload of data.csv resumed');
    expect(announcement(item, 'retrying')).toBe('Upload of data.csv resumed');
    expect(announcement(item, 'queued')).toBe('');
    expect(
      announcement({ ...item, state: 'retrying', retryReason: 'server error (502)' }, 'uploading')
    ).toBe('Upload of data.csv: server error (502), retrying');
    expect(announcement({ ...item, state: 'retrying', offline: true }, 'uploading')).toBe(
      'Upload of data.csv: offline, retrying'
    );
    expect(
      announcement(
        { ...item, state: 'failed', error: 'no permission to upload to data/' },
        'uploading'
      )
    ).toBe('Upload of data.csv failed: no permission to upload to data/');
    expect(announcement({ ...item, state: 'cancelled' }, 'uploading')).toBe(
      'Upload of data.csv cancelled'
    );
    // "Cancel" to the overwrite question: nothing to say, there never was a row.
    expect(announcement({ ...item, state: 'cancelled' }, 'queued', true)).toBe('');
  });

  it('says a burst of landed files once', () => {
    expect(doneAnnouncement([{ name: 'a.csv', folder: '' }])).toBe('a.csv uploaded to /');
    const many = Array.from({ length: 200 }, (_, i) => ({ name: `${i}.txt`, folder: 'raw' }));
    expect(doneAnnouncement(many)).toBe('200 files uploaded to raw/');
    expect(doneAnnouncement([...many, { name: 'b', folder: 'other' }])).toBe('201 files uploaded');
    expect(doneAnnouncement([])).toBe('');
  });
});

describe("the widget's list of unfinished uploads to its folder (FolderUploads)", () => {
  const idle = { last_activity: '2026-11-29T16:00:00Z' };
  const inA = upload({ id: 'a', destination: 'A/x.csv', ...idle });
  const inB = upload({ id: 'b', filename: 'other.csv', destination: 'B/other.csv', ...idle });
  const file = { name: 'x.csv', size: 40 * MiB };

  it('offers nothing of the old folder once the folder changed', async () => {
    let listed = [inA, inB];
    const list = new FolderUploads(async () => listed);
    expect(await list.refresh('A')).toBe(true);
    expect(list.uploads('A').map(u => u.id)).toEqual(['a']);
    // The widget's path is now B: a file like the upload left in A goes to B as a new
    // upload, not on with A's.
    const reading = list.refresh('B');
    expect(list.uploads('A')).toEqual([]);
    expect(list.take(file, 'B', NOW)).toBeUndefined();
    await reading;
    expect(list.uploads('B').map(u => u.id)).toEqual(['b']);
    expect(list.take(file, 'B', NOW)).toBeUndefined();
    expect(list.take(file, 'A', NOW)).toBeUndefined();
    listed = [inA, inB];
    await list.refresh('A');
    expect(list.take(file, 'A', NOW)?.id).toBe('a');
  });

  it('keeps the answer to the latest read', async () => {
    const answers: ((l: IServerUpload[]) => void)[] = [];
    const list = new FolderUploads(() => new Promise(resolve => answers.push(resolve)));
    const first = list.refresh('A');
    const second = list.refresh('A');
    answers[1]([inA]);
    expect(await second).toBe(true);
    answers[0]([]); // the older answer comes last
    expect(await first).toBe(false);
    expect(list.uploads('A').map(u => u.id)).toEqual(['a']);
  });

  it('gives an upload to one pick only, and none someone is sending', async () => {
    const busy = upload({
      id: 'busy',
      destination: 'A/x.csv',
      last_activity: '2026-11-29T16:59:55Z'
    });
    const list = new FolderUploads(async () => [busy, inA]);
    await list.refresh('A');
    expect(list.take(file, 'A', NOW)?.id).toBe('a');
    expect(list.take(file, 'A', NOW)).toBeUndefined();
    expect(list.uploads('A').map(u => u.id)).toEqual(['busy']);
  });

  it('keeps the list as it was when the server cannot be read', async () => {
    let listed: IServerUpload[] | null = [inA];
    const list = new FolderUploads(async () => listed);
    await list.refresh('A');
    listed = null;
    expect(await list.refresh('A')).toBe(false);
    expect(list.uploads('A').map(u => u.id)).toEqual(['a']);
  });
});
