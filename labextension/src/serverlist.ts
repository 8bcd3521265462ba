/**
 * The server's list of uploads (`GET {base_url}api/tus/uploads`) as the Uploads panel
 * shows it: parsing, the rows' words, and the merge with this page's own uploads. Pure
 * (no DOM, no JupyterLab): jest tests it directly.
 */
import {
  UploadState,
  describeLanding,
  displayFolder,
  formatBytes,
  formatDuration,
  formatPercent
} from './core';

/** Where an upload stands on the server (jupyter_tus/summary.py). */
export type ServerState = 'uploading' | 'done' | 'landing' | 'refused' | 'gone' | 'in the store';

/** One upload as the server lists it. */
export interface IServerUpload {
  id: string;
  /** Path-only URL of the upload (under the base URL). */
  url: string;
  filename: string | null;
  /** Where the file goes (or went), relative to the server's root: "data/x.csv". */
  destination: string | null;
  size: number | null;
  offset: number;
  state: ServerState;
  created: string | null;
  last_activity: string | null;
  expires: string | null;
  landed_path: string | null;
  message: string | null;
}

/** An upload the server saw bytes for this recently is being sent by someone. */
export const ACTIVE_WINDOW_MS = 30_000;

const STATES: ServerState[] = ['uploading', 'done', 'landing', 'refused', 'gone', 'in the store'];

function str(v: unknown): string | null {
  return typeof v === 'string' ? v : null;
}

function num(v: unknown): number | null {
  return typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : null;
}

/** The uploads of a listing answer; anything of the wrong shape is left out. */
export function parseListing(body: unknown): IServerUpload[] {
  const list = (body as { uploads?: unknown })?.uploads;
  if (!Array.isArray(list)) {
    return [];
  }
  const out: IServerUpload[] = [];
  for (const raw of list) {
    const r = raw as Record<string, unknown>;
    const id = str(r?.id);
    const url = str(r?.url);
    const state = str(r?.state) as ServerState | null;
    if (!id || !url || !state || !STATES.includes(state)) {
      continue;
    }
    out.push({
      id,
      url,
      filename: str(r.filename),
      destination: str(r.destination),
      size: num(r.size),
      offset: num(r.offset) ?? 0,
      state,
      created: str(r.created),
      last_activity: str(r.last_activity),
      expires: str(r.expires),
      landed_path: str(r.landed_path),
      message: str(r.message)
    });
  }
  return out;
}

/** The folder an upload goes to: "data" for "data/x.csv", "" for the top folder. */
export function folderOf(u: IServerUpload): string {
  const dest = u.destination ?? '';
  const slash = dest.lastIndexOf('/');
  return slash < 0 ? '' : dest.slice(0, slash);
}

/** The file's name as the row shows it. */
export function nameOf(u: IServerUpload): string {
  if (u.filename) {
    return u.filename;
  }
  const dest = u.destination ?? '';
  return dest.slice(dest.lastIndexOf('/') + 1) || u.id;
}

/** How many uploads finished elsewhere (another browser, the widget, a script) the
 * panel shows, the latest first; unfinished ones are all shown. */
export const MAX_FINISHED_ROWS = 10;

/** Whether the panel shows this upload at all (a piece of a parallel upload, or one
 * without a destination, is no file of the user's). */
export function isShown(u: IServerUpload): boolean {
  return u.state !== 'in the store' && !!u.destination;
}

export function isFinished(u: IServerUpload): boolean {
  return u.state === 'done' || u.state === 'refused' || u.state === 'gone';
}

/** Milliseconds since the server last received bytes for it (Infinity: unknown). */
export function idleFor(u: IServerUpload, now: number): number {
  const t = u.last_activity ? Date.parse(u.last_activity) : NaN;
  return Number.isFinite(t) ? Math.max(0, now - t) : Infinity;
}

/** An unfinished upload someone (another tab, browser, the widget, a script) is sending. */
export function isActiveElsewhere(u: IServerUpload, now: number): boolean {
  return u.state === 'uploading' && idleFor(u, now) < ACTIVE_WINDOW_MS;
}

/** The row's state, in the panel's words and colours. */
export function serverRowState(u: IServerUpload, now: number): UploadState | 'elsewhere' {
  switch (u.state) {
    case 'done':
      return 'done';
    case 'refused':
    case 'gone':
      return 'failed';
    case 'landing':
      return 'retrying';
    default:
      return isActiveElsewhere(u, now) ? 'elsewhere' : 'interrupted';
  }
}

export function serverFraction(u: IServerUpload): number {
  if (u.state === 'done') {
    return 1;
  }
  return u.size ? Math.min(1, u.offset / u.size) : 0;
}

/**
 * The one status line of a row the server lists (the same words as the rows of this
 * page's own uploads):
 *   interrupted at 29% · 12 MiB of 40 MiB → data/ · Resume and pick the file again
 *   uploading elsewhere · 29% · 12 MiB of 40 MiB · last data 3s ago
 *   done · 40 MiB → data/x.csv
 *   failed · the file was moved, deleted or changed since it landed
 */
export function serverStatusLine(u: IServerUpload, now: number): string {
  const pct = formatPercent(serverFraction(u));
  const size = u.size === null ? 'unknown size' : formatBytes(u.size);
  const amount = `${formatBytes(u.offset)} of ${size}`;
  switch (u.state) {
    case 'done':
      return `done · ${formatBytes(u.size ?? u.offset)} → ${describeLanding(
        u.destination ?? '',
        u.landed_path
      )}`;
    case 'refused':
      return `failed · ${u.message || 'the server could not put the file in place'}`;
    case 'gone':
      return `gone · ${u.message || 'the file was moved, deleted or changed since it landed'}`;
    case 'landing':
      return `every byte arrived, moving it into place · ${size}`;
    default:
      if (isActiveElsewhere(u, now)) {
        return `uploading elsewhere · ${pct} · ${amount} · last data ${formatDuration(
          idleFor(u, now) / 1000
        )} ago`;
      }
      return `interrupted at ${pct} · ${amount} → ${displayFolder(
        folderOf(u)
      )} · Resume and pick the file again`;
  }
}

/**
 * The server's list of this user's uploads (`GET <endpoint>`, see docs/protocol.md), or
 * null when it could not be read (the server away, an older server); `finishedLimit`:
 * of the finished uploads only the latest that many.
 */
export async function fetchServerUploads(
  endpoint: string,
  headers: Record<string, string>,
  finishedLimit?: number
): Promise<IServerUpload[] | null> {
  // At most `finishedLimit` finished uploads (the latest): every unfinished one comes.
  const url =
    finishedLimit === undefined ? endpoint : `${endpoint}?finished_limit=${finishedLimit}`;
  try {
    const response = await fetch(url, {
      headers: { ...headers, Accept: 'application/json' },
      credentials: 'same-origin',
      cache: 'no-store'
    });
    return response.ok ? parseListing(await response.json()) : null;
  } catch (err) {
    console.debug('jupyter-tus: the list of uploads could not be read', err);
    return null;
  }
}

/**
 * The server's unfinished uploads to one folder (the notebook widget's `path`), which a
 * file picked again continues. The list is of the folder it was read for: after the
 * folder changes nothing of the old one is offered (a file dropped then goes to the new
 * folder, never on with an upload to the old one), and an answer to an older read is
 * dropped when a newer one was asked for.
 */
export class FolderUploads {
  /** `read`: the server's list (`fetchServerUploads`), null when it could not be read. */
  constructor(private _read: () => Promise<IServerUpload[] | null>) {}

  /** The folder the list is (being) read for; null before the first read. */
  get folder(): string | null {
    return this._folder;
  }

  /** The unfinished uploads to `folder` (none when the list is of another folder). */
  uploads(folder: string): readonly IServerUpload[] {
    return folder === this._folder ? this._uploads : [];
  }

  /** Read the list for `folder`; false when it could not be read or a newer read was
   * asked for meanwhile (the list stays as it was). */
  async refresh(folder: string): Promise<boolean> {
    const seq = ++this._seq;
    if (folder !== this._folder) {
      this._folder = folder;
      this._uploads = [];
    }
    const listed = await this._read();
    if (!listed || seq !== this._seq) {
      return false;
    }
    this._uploads = listed.filter(
      u => u.state === 'uploading' && isShown(u) && folderOf(u) === folder
    );
    return true;
  }

  /**
   * The listed upload to `folder` that `file` continues (same name, and size when the
   * server knows it), taken off the list; undefined when none. Not one someone is
   * sending right now (`isActiveElsewhere`): it would only be refused.
   */
  take(
    file: { name: string; size: number },
    folder: string,
    now: number
  ): IServerUpload | undefined {
    const u = this.uploads(folder).find(
      u => !isActiveElsewhere(u, now) && !pickedFileMismatch(u, file)
    );
    if (u) {
      this.remove(u);
    }
    return u;
  }

  /** Take `upload` off the list (this page goes on with it). */
  remove(upload: IServerUpload): void {
    this._uploads = this._uploads.filter(u => u.id !== upload.id);
  }

  private _folder: string | null = null;
  private _uploads: IServerUpload[] = [];
  private _seq = 0;
}

/**
 * A drop of more files than this shows its total and only the files that are sending or
 * need the user (retrying, paused, failed): not a row for each file waiting its turn or
 * done, which would cost the page more than their uploads (hundreds of rows to lay out).
 */
export const MANY_FILES = 20;

/**
 * Whether the row of a file of a batch of `files` is left out (counted in the batch's
 * row): a file waiting its turn, done or cancelled in a batch of more than MANY_FILES,
 * unless the keyboard is on its row (`focused`): a row never goes from under the focus
 * because its file finished (the focus moves to the row's next button instead, and the
 * row goes once the focus left it).
 */
export function quietInBatch(state: string, files: number, focused: boolean): boolean {
  return files > MANY_FILES && ['queued', 'done', 'cancelled'].includes(state) && !focused;
}

/** What a view needs of one of this page's uploads to merge it with the server's. */
export interface ILocalUpload {
  readonly id: number;
  readonly uploadId: string | null;
  readonly path: string;
  readonly size: number;
  readonly state: string;
}

export type Row<T extends ILocalUpload> =
  { kind: 'local'; key: string; item: T } | { kind: 'server'; key: string; upload: IServerUpload };

/**
 * The panel's rows: this page's uploads first (newest first, in the order they were
 * started, so a multi-file drop keeps its order), then the server's uploads this page
 * does not drive, as the server orders them (newest first). A server upload is this
 * page's when its id matches, or (before its URL is known) its destination and size do.
 */
export function mergeRows<T extends ILocalUpload>(
  local: readonly T[],
  server: readonly IServerUpload[],
  dismissed: ReadonlySet<string> = new Set()
): Row<T>[] {
  const rows: Row<T>[] = [...local]
    .sort((a, b) => b.id - a.id)
    .map(item => ({ kind: 'local' as const, key: `local:${item.id}`, item }));
  const ids = new Set(local.map(i => i.uploadId).filter((id): id is string => !!id));
  const pending = local.filter(i => !i.uploadId && i.state !== 'done' && i.state !== 'cancelled');
  // Every unfinished upload (it can be resumed here); of the finished ones from elsewhere
  // only the latest few: a day of uploads (thousands of small files) is not a panel.
  const finished = server
    .filter(u => isFinished(u) && isShown(u) && !ids.has(u.id) && !dismissed.has(u.id))
    .sort((a, b) => (b.last_activity ?? '').localeCompare(a.last_activity ?? ''))
    .slice(0, MAX_FINISHED_ROWS);
  const latest = new Set(finished.map(u => u.id));
  for (const upload of server) {
    if (!isShown(upload) || ids.has(upload.id) || dismissed.has(upload.id)) {
      continue;
    }
    if (isFinished(upload) && !latest.has(upload.id)) {
      continue;
    }
    if (
      upload.state === 'uploading' &&
      pending.some(i => i.path === upload.destination && i.size === upload.size)
    ) {
      continue;
    }
    rows.push({ kind: 'server', key: `server:${upload.id}`, upload });
  }
  return rows;
}

/** Why a picked file cannot resume a server's upload ('' when it can). */
export function pickedFileMismatch(u: IServerUpload, file: { name: string; size: number }): string {
  const name = nameOf(u);
  if (file.name !== name) {
    return `"${file.name}" is not ${name}: pick the file this upload started with`;
  }
  if (u.size !== null && file.size !== u.size) {
    return `"${file.name}" has ${formatBytes(file.size)}, the upload ${formatBytes(
      u.size
    )}: pick the file this upload started with`;
  }
  return '';
}

/** What the status-bar item says while uploads run: "Uploading 3 files · 42%". */
export function progressSummary(
  items: readonly { state: string; sent: number; size: number }[]
): { count: number; fraction: number; text: string } | null {
  const running = items.filter(i => ['queued', 'uploading', 'retrying'].includes(i.state));
  if (!running.length) {
    return null;
  }
  const size = running.reduce((n, i) => n + i.size, 0);
  const sent = running.reduce((n, i) => n + Math.min(i.sent, i.size), 0);
  const fraction = size > 0 ? sent / size : 0;
  const files = running.length === 1 ? '1 file' : `${running.length} files`;
  return {
    count: running.length,
    fraction,
    text: `Uploading ${files} · ${formatPercent(fraction)}`
  };
}

/** Ids the user removed from the list (kept across reloads, the newest `limit`). */
export class DismissedIds {
  constructor(
    private readonly storage: Pick<Storage, 'getItem' | 'setItem'> | null,
    private readonly key = 'jupyter-tus:dismissed',
    private readonly limit = 500
  ) {
    try {
      const raw = storage?.getItem(key);
      const parsed = raw ? JSON.parse(raw) : [];
      if (Array.isArray(parsed)) {
        this._ids = parsed.filter((x): x is string => typeof x === 'string');
      }
    } catch {
      this._ids = [];
    }
  }

  get set(): ReadonlySet<string> {
    return new Set(this._ids);
  }

  add(...ids: string[]): void {
    const fresh = ids.filter(id => !this._ids.includes(id));
    if (!fresh.length) {
      return;
    }
    this._ids = [...this._ids, ...fresh].slice(-this.limit);
    try {
      this.storage?.setItem(this.key, JSON.stringify(this._ids));
    } catch {
      // storage full or disabled: forgotten on reload
    }
  }

  private _ids: string[] = [];
}

/** What the panel's live region says when an upload of this page changes state ('' for
 * nothing). `asked`: the change follows the overwrite question (its Cancel says nothing). */
export function announcement(
  item: {
    state: string;
    name: string;
    folder: string;
    error: string;
    offline: boolean;
    retryReason: string;
    fraction: number;
  },
  before: string | undefined,
  asked = false
): string {
  const name = item.name;
  switch (item.state) {
    case 'done':
      return `${name} uploaded to ${displayFolder(item.folder)}`;
    case 'failed':
      return `Upload of ${name} failed: ${item.error}`;
    case 'retrying': {
      const why = item.offline ? 'offline' : item.retryReason || 'connection lost';
      return `Upload of ${name}: ${why}, retrying`;
    }
    case 'paused':
      return `Upload of ${name} paused at ${formatPercent(item.fraction)}`;
    case 'cancelled':
      return asked ? '' : `Upload of ${name} cancelled`;
    case 'uploading':
      return before && before !== 'queued' ? `Upload of ${name} resumed` : '';
    default:
      return '';
  }
}

/** Several uploads done at once are said once: "3 files uploaded". */
export function doneAnnouncement(done: readonly { name: string; folder: string }[]): string {
  if (done.length === 1) {
    return `${done[0].name} uploaded to ${displayFolder(done[0].folder)}`;
  }
  const folders = new Set(done.map(d => d.folder));
  const where = folders.size === 1 ? ` to ${displayFolder([...folders][0])}` : '';
  return done.length ? `${done.length} files uploaded${where}` : '';
}
