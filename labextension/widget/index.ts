/**
 * jupyter-tus UploadWidget front end (anywidget ESM, bundled with tus-js-client).
 *
 * A thin view over the same TusUploader (src/uploader.ts) as the file browser's Uploads
 * panel: one fingerprint (so either front end resumes the other's uploads to the same
 * folder), one retry rule, one message catalogue, the 413 fallback, kept file handles.
 * Files go from the browser straight to the tus endpoint of the Jupyter server over
 * HTTP ({base_url}api/tus/uploads), never through the kernel's comm channel. Only the
 * id of each finished upload is sent to the kernel (a model message), where the Python
 * side fetches its FileInfo from the store.
 */
import {
  DEFAULT_SETTINGS,
  authHeaders,
  displayFolder,
  normalizeFolder,
  normalizeSettings,
  statusLine
} from '../src/core';
import { HandleRegistry, handlesSupported } from '../src/handles';
import {
  FolderUploads,
  IServerUpload,
  fetchServerUploads,
  folderOf,
  nameOf,
  pickedFileMismatch,
  serverFraction,
  serverRowState,
  serverStatusLine
} from '../src/serverlist';
import { TusUploader, UploadItem, probeEndpoint } from '../src/uploader';
import STYLE from './widget.css';

/** The part of anywidget's model this view uses. */
interface IModel {
  get(name: string): any;
  on(event: string, callback: () => void): void;
  off(event: string, callback: () => void): void;
  send(content: Record<string, unknown>): void;
}

interface IRenderProps {
  model: IModel;
  el: HTMLElement;
}

const STYLE_ID = 'jupyter-tus-widget-style';

/** The widget's CSS, once per page. */
function addStyle(): void {
  if (!document.getElementById(STYLE_ID)) {
    const style = document.createElement('style');
    style.id = STYLE_ID;
    style.textContent = STYLE;
    document.head.append(style);
  }
}

function pageConfig(): Record<string, any> {
  const el = document.getElementById('jupyter-config-data');
  if (el && el.textContent) {
    try {
      return JSON.parse(el.textContent);
    } catch {
      /* fall through */
    }
  }
  return {};
}

/** The server's base URL (path), from the page config, else guessed from the URL. */
function baseUrl(config: Record<string, any>): string {
  let base: string | undefined = config.baseUrl;
  if (!base) {
    const m = window.location.pathname.match(
      /^(.*?\/)(lab|tree|notebooks|edit|doc|voila|apps|consoles)(\/|$)/
    );
    base = m ? m[1] : '/';
  }
  return base.endsWith('/') ? base : base + '/';
}

/** The creation endpoint, spelled as the file browser spells it (the fingerprint has it). */
function endpointFor(model: IModel, config: Record<string, any>): string {
  const explicit: string = model.get('endpoint');
  const url = explicit || baseUrl(config) + 'api/tus/uploads';
  return new URL(url, window.location.href).href.replace(/\/+$/, '');
}

/** Why uploads are not possible, in plain words, or null when the endpoint is a tus one. */
async function unavailable(
  uploader: TusUploader,
  headers: Record<string, string>
): Promise<string | null> {
  const endpoint = uploader.endpoint;
  const hint =
    'is the jupyter-tus server extension installed and enabled on the Jupyter server ' +
    '(jupyter server extension list)?';
  const check = await probeEndpoint(endpoint, headers);
  if (check.ok) {
    // The server's chunk limit (max_chunk_size), before the first upload sends a body.
    uploader.limitChunks(check.maxChunkSize);
    return null;
  }
  if (check.reason === 'unreachable') {
    return `Uploads are not possible: the upload endpoint ${endpoint} cannot be reached. ${hint}`;
  }
  if (check.reason === 'refused') {
    return `Uploads are not possible: the server refused access to ${endpoint} (${check.status}). Reload the page to log in again.`;
  }
  return `Uploads are not possible: ${endpoint} is not a tus upload endpoint (HTTP ${check.status}); ${hint}`;
}

function button(cls: string, label: string, onClick: () => void): HTMLButtonElement {
  const b = document.createElement('button');
  b.type = 'button';
  b.textContent = label;
  b.className = `jtus-${cls}`;
  b.addEventListener('click', e => {
    e.stopPropagation();
    onClick();
  });
  return b;
}

/** A file picked through a fresh `<input type=file>` (to resume an interrupted upload). */
function pickOne(accept: string): Promise<File | null> {
  return new Promise(resolve => {
    const input = document.createElement('input');
    input.type = 'file';
    input.accept = accept;
    input.className = 'jtus-pick';
    input.style.display = 'none';
    input.onchange = () => {
      resolve(input.files?.[0] ?? null);
      input.remove();
    };
    input.addEventListener('cancel', () => {
      resolve(null);
      input.remove();
    });
    document.body.append(input);
    input.click();
  });
}

/** The rows of one widget: the uploader's items, rendered. */
class Rows {
  constructor(
    readonly list: HTMLElement,
    readonly uploader: TusUploader,
    readonly model: IModel
  ) {
    uploader.changed.connect(this._schedule, this);
  }

  /** Answers waiting for the overwrite question of a row. */
  readonly questions = new Map<number, (yes: boolean) => void>();

  ask(item: UploadItem): Promise<boolean> {
    return new Promise(resolve => {
      this.questions.set(item.id, resolve);
      this.render();
    });
  }

  private _answer(item: UploadItem, yes: boolean): void {
    const answer = this.questions.get(item.id);
    this.questions.delete(item.id);
    answer?.(yes);
  }

  /** Progress comes much faster than anyone reads: at most every 250 ms, except when a
   * row changes state or learns its upload's id. */
  private _schedule(_: unknown, item: UploadItem | null): void {
    const row = item ? this._rows.get(item.id) : undefined;
    if (
      item &&
      row &&
      item.state === 'uploading' &&
      row.dataset.state === 'uploading' &&
      (row.dataset.uploadId ?? '') === (item.uploadId ?? '')
    ) {
      if (this._timer === null) {
        this._timer = window.setTimeout(() => {
          this._timer = null;
          this.render();
        }, 250);
      }
      return;
    }
    this.render();
  }

  render(): void {
    const items = this.uploader.items;
    const keep = new Set<number>();
    // Oldest first, as the files were chosen.
    [...items].reverse().forEach((item, index) => {
      keep.add(item.id);
      let row = this._rows.get(item.id);
      if (!row) {
        row = this._create(item);
        this._rows.set(item.id, row);
      }
      if (this.list.children[index] !== row) {
        this.list.insertBefore(row, this.list.children[index] ?? null);
      }
      this._update(row, item);
    });
    for (const [id, row] of this._rows) {
      if (!keep.has(id)) {
        row.remove();
        this._rows.delete(id);
      }
    }
  }

  dispose(): void {
    this.uploader.changed.disconnect(this._schedule, this);
    if (this._timer !== null) {
      window.clearTimeout(this._timer);
    }
    for (const answer of this.questions.values()) {
      answer(false);
    }
    this.questions.clear();
  }

  private _create(item: UploadItem): HTMLElement {
    const row = document.createElement('div');
    row.className = 'jtus-file';
    const name = document.createElement('div');
    name.className = 'jtus-name';
    name.textContent = item.name;
    name.title = item.path;
    const buttons = document.createElement('div');
    buttons.className = 'jtus-buttons';
    const up = this.uploader;
    buttons.append(
      button('overwrite', 'Overwrite', () => this._answer(item, true)),
      button('pause', 'Pause', () => up.pause(item)),
      button('resume', 'Resume', () => {
        void up.resume(item, () => pickOne(this.model.get('accept') || ''));
      }),
      button('cancel', 'Cancel', () => {
        if (this.questions.has(item.id)) {
          this._answer(item, false);
        } else {
          void up.cancel(item);
        }
      })
    );
    const bar = document.createElement('progress');
    bar.className = 'jtus-progress';
    bar.max = 1;
    bar.value = 0;
    const status = document.createElement('div');
    status.className = 'jtus-status';
    row.append(name, buttons, bar, status);
    return row;
  }

  private _update(row: HTMLElement, item: UploadItem): void {
    row.dataset.state = item.state;
    const id = item.uploadId;
    if (id) {
      row.dataset.uploadId = id;
    }
    if (item.resumedFrom > 0) {
      row.dataset.resumedFrom = String(item.resumedFrom);
    }
    const asking = this.questions.has(item.id);
    const show = (cls: string, visible: boolean, title?: string) => {
      const b = row.querySelector(`.jtus-${cls}`) as HTMLButtonElement;
      b.hidden = !visible;
      if (title) {
        b.title = title;
      }
    };
    show('overwrite', asking, `Replace the existing ${item.name}`);
    show('pause', item.state === 'uploading' || item.state === 'retrying');
    show(
      'resume',
      ['paused', 'failed', 'interrupted'].includes(item.state),
      item.state === 'interrupted' && !item.handle
        ? 'Pick the same file again to resume'
        : 'Resume from what the server holds'
    );
    show(
      'cancel',
      item.state !== 'done' && item.state !== 'cancelled',
      asking ? 'Keep the existing file' : 'Cancel and delete the uploaded part'
    );
    (row.querySelector('.jtus-progress') as HTMLProgressElement).value = item.fraction;
    const status = row.querySelector('.jtus-status') as HTMLElement;
    status.textContent = statusLine(item, Date.now());
    status.title = item.error || status.textContent;
  }

  private _rows = new Map<number, HTMLElement>();
  private _timer: number | null = null;
}

/**
 * Unfinished uploads to the widget's folder that the server lists and this page did not
 * start (another browser, the file browser, a script), in the Uploads panel's words:
 * picking the same file again (Resume, or the widget's own input) goes on from the
 * server's offset. Read again when the folder (`path`) changes, when this page's uploads
 * end, and every 15 s while the widget is on a visible page (as the panel's list).
 */
class ServerRows {
  constructor(
    readonly list: HTMLElement,
    readonly uploader: TusUploader,
    readonly pick: () => Promise<File | null>,
    readonly headers: () => Record<string, string>,
    readonly folder: () => string,
    readonly failed: (message: string) => void
  ) {
    this._model = new FolderUploads(() => fetchServerUploads(uploader.endpoint, headers()));
    uploader.changed.connect(this._onChanged, this);
  }

  /** Read the server's list for the widget's folder (now, and from then on every 15 s
   * while the widget is on a visible page). */
  async refresh(): Promise<void> {
    if (this._disposed) {
      return;
    }
    if (this._poll === null) {
      this._poll = window.setInterval(() => {
        if (this.list.isConnected && document.visibilityState !== 'hidden') {
          void this.refresh();
        }
      }, 15_000);
    }
    const reading = this._model.refresh(this.folder());
    this.render(); // (a new folder shows nothing of the old one meanwhile)
    if (await reading) {
      this.render();
    }
  }

  /** The listed upload `file` continues in `folder`, taken off the list; undefined
   * when none. */
  take(file: File, folder: string): IServerUpload | undefined {
    const u = this._model.take(file, folder, Date.now());
    if (u) {
      this.render();
    }
    return u;
  }

  /** Draw the rows again when what they show changed (not on every progress event of
   * this page's uploads: a focused Resume button stays). */
  render(): void {
    const known = new Set(this.uploader.items.map(i => i.uploadId));
    const now = Date.now();
    const shown = this._model.uploads(this.folder()).filter(u => !known.has(u.id));
    this.list.dataset.serverUploads = String(shown.length);
    const keep = new Set<string>();
    shown.forEach((u, index) => {
      keep.add(u.id);
      let row = this._rows.get(u.id);
      if (!row) {
        row = this._row(u);
        this._rows.set(u.id, row);
      }
      if (this.list.children[index] !== row) {
        this.list.insertBefore(row, this.list.children[index] ?? null);
      }
      this._update(row, u, now);
    });
    for (const [id, row] of this._rows) {
      if (!keep.has(id)) {
        row.remove();
        this._rows.delete(id);
        this._errors.delete(id);
      }
    }
  }

  dispose(): void {
    this._disposed = true;
    if (this._poll !== null) {
      window.clearInterval(this._poll);
    }
    this.uploader.changed.disconnect(this._onChanged, this);
  }

  private _onChanged(_: unknown, item: UploadItem | null): void {
    const before = item ? this._states.get(item.id) : undefined;
    if (item) {
      this._states.set(item.id, item.state);
    }
    if (!item || before !== item.state) {
      this.render(); // (an upload of the list this page now drives leaves it)
    }
    if (
      item &&
      before !== item.state &&
      ['done', 'failed', 'cancelled'].includes(item.state) &&
      !this.uploader.items.some(i => ['queued', 'uploading', 'retrying'].includes(i.state))
    ) {
      void this.refresh(); // the server's word, once this page's uploads have ended
    }
  }

  private _row(u: IServerUpload): HTMLElement {
    const row = document.createElement('div');
    row.className = 'jtus-file jtus-server';
    row.dataset.uploadId = u.id;
    const name = document.createElement('div');
    name.className = 'jtus-name';
    const buttons = document.createElement('div');
    buttons.className = 'jtus-buttons';
    const status = document.createElement('div');
    status.className = 'jtus-status';
    buttons.append(button('resume', 'Resume', () => void this._resume(u.id)));
    const bar = document.createElement('progress');
    bar.className = 'jtus-progress';
    bar.max = 1;
    row.append(name, buttons, bar, status);
    return row;
  }

  private _update(row: HTMLElement, u: IServerUpload, now: number): void {
    row.dataset.state = serverRowState(u, now);
    const name = row.querySelector('.jtus-name') as HTMLElement;
    name.textContent = nameOf(u);
    name.title = u.destination ?? '';
    const resume = row.querySelector('.jtus-resume') as HTMLButtonElement;
    resume.hidden = row.dataset.state === 'elsewhere';
    resume.setAttribute('aria-label', `Resume upload of ${nameOf(u)} (pick the file again)`);
    (row.querySelector('.jtus-progress') as HTMLProgressElement).value = serverFraction(u);
    const status = row.querySelector('.jtus-status') as HTMLElement;
    const error = this._errors.get(u.id);
    const line = serverStatusLine(u, now);
    status.textContent = error ? `${line} · ${error}` : line;
    status.title = status.textContent;
  }

  private async _resume(id: string): Promise<void> {
    const u = this._model.uploads(this.folder()).find(other => other.id === id);
    if (!u) {
      return;
    }
    const file = await this.pick();
    if (!file) {
      return;
    }
    const why = pickedFileMismatch(u, file);
    if (why) {
      this._errors.set(id, why);
      this.render();
      return;
    }
    this._model.remove(u);
    this.render();
    this.uploader.adopt(u.url, u.size, file, folderOf(u)).catch(err => {
      this.failed(String((err as Error)?.message ?? err));
      void this.refresh(); // (listed again if the server still has it)
    });
  }

  private _model: FolderUploads;
  private _rows = new Map<string, HTMLElement>();
  private _errors = new Map<string, string>();
  private _states = new Map<number, string>();
  private _poll: number | null = null;
  private _disposed = false;
}

function render({ model, el }: IRenderProps): () => void {
  addStyle();
  const config = pageConfig();
  const endpoint = endpointFor(model, config);
  const headers = () => authHeaders(document.cookie, config.token, config.xsrfToken);
  const folder = () => normalizeFolder(model.get('path'));

  const root = document.createElement('div');
  root.className = 'jtus';
  const input = document.createElement('input');
  input.type = 'file';
  input.className = 'jtus-input';
  input.style.display = 'none';
  const drop = document.createElement('div');
  drop.className = 'jtus-drop';
  const label = document.createElement('span');
  drop.append(label);
  const message = document.createElement('div');
  message.className = 'jtus-message';
  const list = document.createElement('div');
  list.className = 'jtus-files';
  const elsewhere = document.createElement('div');
  elsewhere.className = 'jtus-files jtus-elsewhere';
  root.append(input, drop, message, list, elsewhere);
  el.append(root);

  let rows: Rows | null = null;
  const uploader = new TusUploader({
    endpoint,
    headers,
    settings: () =>
      normalizeSettings({ ...DEFAULT_SETTINGS, chunkSize: Number(model.get('chunk_size')) }),
    confirmOverwrite: (_name, _folder, item) => rows!.ask(item),
    landed: item => {
      model.send({
        type: 'complete',
        id: item.uploadId,
        url: item.uploadUrl,
        filename: item.name,
        size: item.size,
        filetype: item.file?.type ?? ''
      });
    }
  });
  rows = new Rows(list, uploader, model);
  const server = new ServerRows(
    elsewhere,
    uploader,
    () => pickOne(model.get('accept') || ''),
    headers,
    folder,
    problem => {
      message.textContent = problem;
    }
  );

  root.dataset.ready = 'checking';
  const available: Promise<boolean> = unavailable(uploader, headers()).then(problem => {
    if (problem) {
      message.textContent = problem;
      drop.style.display = 'none';
      root.dataset.ready = 'unavailable';
      model.send({ type: 'unavailable', message: problem });
      return false;
    }
    root.dataset.ready = 'yes';
    // What a reload interrupted, for this widget's folder (from any front end), and
    // what the server holds unfinished for it from elsewhere.
    void uploader.restore(entry => entry.folder === folder());
    void server.refresh();
    return true;
  });

  let shownFolder = folder();
  const sync = () => {
    input.multiple = !!model.get('multiple');
    input.accept = model.get('accept') || '';
    label.textContent = `Drop files here or click to choose (to ${displayFolder(folder())})`;
    if (folder() !== shownFolder) {
      // Another folder: its own unfinished uploads (and what a reload interrupted there).
      shownFolder = folder();
      void available.then(ok => {
        if (ok) {
          void uploader.restore(entry => entry.folder === folder());
          void server.refresh();
        }
      });
    }
  };
  sync();
  for (const name of ['multiple', 'accept', 'path']) {
    model.on(`change:${name}`, sync);
  }

  const handles = new HandleRegistry();
  const add = async (files: File[]) => {
    if (!files.length || !(await available)) {
      return;
    }
    const chosen = model.get('multiple') ? files : files.slice(0, 1);
    message.textContent = '';
    for (const file of chosen) {
      const handle = await handles.take(file);
      const unfinished = server.take(file, folder());
      (unfinished
        ? uploader.adopt(unfinished.url, unfinished.size, file, folderOf(unfinished))
        : uploader.upload(file, folder(), { handle, overwrite: !!model.get('overwrite') })
      ).catch(err => {
        message.textContent = String((err as Error)?.message ?? err);
      });
    }
  };

  drop.addEventListener('click', () => input.click());
  input.addEventListener('change', () => {
    const files = Array.from(input.files || []);
    input.value = '';
    void add(files);
  });
  drop.addEventListener('dragover', e => {
    e.preventDefault();
    e.stopPropagation();
    drop.classList.add('jtus-over');
  });
  drop.addEventListener('dragleave', () => drop.classList.remove('jtus-over'));
  drop.addEventListener('drop', e => {
    e.preventDefault();
    e.stopPropagation();
    drop.classList.remove('jtus-over');
    if (handlesSupported()) {
      // Kept handles let a reload resume with one click (Chromium).
      handles.fromDrop(e);
    }
    void add(e.dataTransfer ? Array.from(e.dataTransfer.files) : []);
  });

  return () => {
    for (const name of ['multiple', 'accept', 'path']) {
      model.off(`change:${name}`, sync);
    }
    rows?.dispose();
    server.dispose();
    uploader.dispose();
  };
}

export default { render };
