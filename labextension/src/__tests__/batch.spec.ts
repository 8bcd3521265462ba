/**
 * The total of a drop of several files (UploadBatch) and the rows a big one leaves out:
 * what the batch's row says when files are paused or cancelled, and that a row the
 * keyboard is on is never left out.
 */
import { MANY_FILES, quietInBatch } from '../serverlist';
import { fakeFile } from './fakes';
import { KiB, harness, settle, until } from './harness';

jest.setTimeout(30_000);

beforeEach(() => {
  jest.useFakeTimers();
  jest.spyOn(console, 'debug').mockImplementation(() => undefined);
  jest.spyOn(console, 'warn').mockImplementation(() => undefined);
});

afterEach(() => {
  jest.useRealTimers();
  jest.restoreAllMocks();
});

describe("a batch's total", () => {
  it('is paused, not done, while a file of it is paused', async () => {
    const h = harness({ chunkSize: 16 * KiB });
    const files = [fakeFile('a.bin', 8 * KiB), fakeFile('big.bin', 200 * KiB)];
    const all = files.map(f => h.uploader.upload(f, 'data'));
    const big = () => h.uploader.items.find(i => i.name === 'big.bin')!;
    await until(() => big()?.state === 'uploading' && big().sent > 0);
    h.uploader.pause(big());
    await settle(all[0]);
    const batch = big().batch!;
    expect(batch.busy).toBe(false);
    expect(batch.state).toBe('paused');
    expect(batch.summary).toMatch(/^1 of 2 files · /);
    await h.uploader.resume(big());
    expect(batch.state).toBe('uploading');
    expect(await settle(all[1])).toBe(true);
    expect(batch.state).toBe('done');
  });

  it('leaves cancelled files out, and says so when every file was cancelled', async () => {
    const h = harness({ chunkSize: 16 * KiB });
    h.server.rules.push(r => (r.method === 'DELETE' ? undefined : 'hang'));
    const files = [fakeFile('x.bin', 100 * KiB), fakeFile('y.bin', 100 * KiB)];
    const all = files.map(f => h.uploader.upload(f, 'data'));
    await until(() => h.uploader.items.every(i => i.state === 'uploading'));
    const batch = h.uploader.items[0].batch!;
    await settle(h.uploader.cancel(h.uploader.items[0]));
    expect(batch.counted).toBe(1);
    expect(batch.summary).toBe('0 of 1 files · 0% · 0 B of 100 KiB');
    await settle(h.uploader.cancel(h.uploader.items[1]));
    expect(await settle(Promise.all(all))).toEqual([false, false]);
    expect(batch.state).toBe('cancelled');
    expect(batch.summary).toBe('2 files cancelled');
  });
});

describe('the rows a big batch leaves out', () => {
  it('are the files waiting, done or cancelled, never the one the keyboard is on', () => {
    const big = MANY_FILES + 1;
    expect(quietInBatch('done', big, false)).toBe(true);
    expect(quietInBatch('queued', big, false)).toBe(true);
    expect(quietInBatch('cancelled', big, false)).toBe(true);
    expect(quietInBatch('uploading', big, false)).toBe(false);
    expect(quietInBatch('paused', big, false)).toBe(false);
    expect(quietInBatch('failed', big, false)).toBe(false);
    // A file that landed while the keyboard was on its row (its Pause button).
    expect(quietInBatch('done', big, true)).toBe(false);
    expect(quietInBatch('cancelled', big, true)).toBe(false);
    expect(quietInBatch('done', MANY_FILES, false)).toBe(false);
  });
});
