/**
 * The uploader against the scripted tus server (fakes.ts), with fake timers: a harness
 * and the helpers that advance fake time until something holds.
 */
import { DEFAULT_SETTINGS, IUploadSettings } from '../core';
import { IChunkMemory } from '../shared';
import { IUploaderOptions, TusUploader, UploadItem } from '../uploader';
import { ENDPOINT, FakeConnectivity, FakeTusServer, MemoryUrlStorage, fakeReader } from './fakes';

export const KiB = 1024;

export interface IHarness {
  server: FakeTusServer;
  storage: MemoryUrlStorage;
  net: FakeConnectivity;
  memory: Map<string, number>;
  uploader: TusUploader;
  states: string[];
  asked: string[];
  answer: boolean;
  landed: UploadItem[];
}

/** An uploader on a fresh fake server (16 KiB chunks unless `settings` says otherwise),
 * or on the server and URL storage of `shared` (another front end of the same browser);
 * its chunk memory is `memory`, not the browser's localStorage. */
export function harness(
  settings: Partial<IUploadSettings> = {},
  options: Partial<IUploaderOptions> = {},
  shared?: { server: FakeTusServer; storage: MemoryUrlStorage }
): IHarness {
  const memory = new Map<string, number>();
  const chunkMemory: IChunkMemory = {
    get: endpoint => memory.get(endpoint) ?? null,
    set: (endpoint, bytes) => void memory.set(endpoint, bytes)
  };
  const h = {
    server: shared?.server ?? new FakeTusServer(),
    storage: shared?.storage ?? new MemoryUrlStorage(),
    net: new FakeConnectivity(),
    memory,
    states: [] as string[],
    asked: [] as string[],
    answer: false,
    landed: [] as UploadItem[]
  } as IHarness;
  h.uploader = new TusUploader({
    endpoint: ENDPOINT,
    headers: () => ({ 'X-XSRFToken': 'xsrf' }),
    settings: () => ({ ...DEFAULT_SETTINGS, chunkSize: 16 * KiB, ...settings }),
    confirmOverwrite: async name => {
      h.asked.push(name);
      return h.answer;
    },
    landed: item => h.landed.push(item),
    httpStack: h.server,
    urlStorage: h.storage,
    fileReader: fakeReader,
    connectivity: h.net,
    chunkMemory,
    tabs: null,
    ...options
  });
  h.uploader.changed.connect((_, item) => {
    if (item && h.states[h.states.length - 1] !== item.state) {
      h.states.push(item.state);
    }
  });
  return h;
}

/** Let promises and due timers run, `ms` of fake time. */
export async function run(ms = 0): Promise<void> {
  await jest.advanceTimersByTimeAsync(ms);
}

/** Advance fake time in small steps until `cond` holds. */
export async function until(cond: () => boolean, maxMs = 10 * 60_000, step = 10): Promise<void> {
  for (let t = 0; t <= maxMs; t += step) {
    if (cond()) {
      return;
    }
    await run(step);
  }
  throw new Error('condition not met in time');
}

/** Advance fake time until `promise` settles; its value. */
export async function settle<T>(promise: Promise<T>, maxMs = 10 * 60_000): Promise<T> {
  let state: { value: T } | null = null;
  let failure: unknown = null;
  promise.then(
    value => (state = { value }),
    err => (failure = err ?? new Error('rejected'))
  );
  await until(() => state !== null || failure !== null, maxMs);
  if (failure) {
    throw failure;
  }
  return state!.value;
}

/** Whether `a` holds the fake file's bytes. */
export function sameBytes(a: Uint8Array | undefined, file: File): boolean {
  const b = (file as unknown as { bytes: Uint8Array }).bytes;
  return !!a && a.length === b.length && a.every((v, i) => v === b[i]);
}

/** Create an upload on the fake server as a script would, holding the file's first
 * `sent` bytes; its path-only URL, as the server's list gives it. */
export function scriptUpload(
  server: FakeTusServer,
  file: File,
  folder: string,
  sent: number,
  deferLength = false
): string {
  const b64 = (s: string) => btoa(s);
  const headers: Record<string, string> = {
    'Tus-Resumable': '1.0.0',
    'Upload-Metadata': `filename ${b64(file.name)},path ${b64(folder)}`
  };
  if (deferLength) {
    headers['Upload-Defer-Length'] = '1';
  } else {
    headers['Upload-Length'] = String(file.size);
  }
  const create = server.createRequest('POST', ENDPOINT);
  for (const [k, v] of Object.entries(headers)) {
    create.setHeader(k, v);
  }
  const created = server.handle(create, null);
  const url = created.getHeader('Location')!;
  const id = url.slice(url.lastIndexOf('/') + 1);
  const bytes = (file as unknown as { bytes: Uint8Array }).bytes;
  const upload = server.uploads.get(id)!;
  upload.data = new Uint8Array(deferLength ? sent : file.size);
  upload.data.set(bytes.subarray(0, sent));
  upload.offset = sent;
  return url;
}
