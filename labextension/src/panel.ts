/**
 * The "Uploads" panel under the file browser's listing: a labelled region with a sticky
 * header (heading, Refresh, Clear finished) and one row per upload: this page's own
 * uploads (the TusUploader's items) and, from the server's list, the unfinished uploads
 * of anywhere else (another browser, the notebook widget, a script) and those finished
 * lately. Each row: the name (ellipsised, full path in its tooltip), icon buttons in a
 * fixed column named with the file, a progress bar with an accessible name and value
 * text, and one status line. State changes are announced through one aria-live region.
 */
import {
  Toolbar,
  ToolbarButton,
  LabIcon,
  closeIcon,
  folderIcon,
  launchIcon,
  pauseIcon,
  refreshIcon,
  runIcon,
  stopIcon
} from '@jupyterlab/ui-components';
import { Panel, Widget } from '@lumino/widgets';

import { displayFolder, formatPercent, statusLine } from './core';
import {
  DismissedIds,
  announcement,
  doneAnnouncement,
  IServerUpload,
  Row,
  isFinished,
  MAX_FINISHED_ROWS,
  mergeRows,
  nameOf,
  fetchServerUploads,
  pickedFileMismatch,
  quietInBatch,
  serverFraction,
  serverRowState,
  serverStatusLine
} from './serverlist';
import { TusUploader, UploadBatch, UploadItem } from './uploader';

export interface IUploadPanelOptions {
  uploader: TusUploader;
  /** Ask the user to pick the file `name` again (a file dialog); null when closed. */
  pickFile: (name: string) => Promise<File | null>;
  /** Fresh authentication headers for the list and termination requests. */
  headers: () => Record<string, string>;
  /** Open a landed file / show it in the file browser. */
  open: (path: string) => void;
  reveal: (path: string) => void;
  /** Continue a server's upload with the file the user picked again. */
  adopt: (upload: IServerUpload, file: File) => Promise<void>;
  /** How often the server's list is read again while the panel is visible (ms). */
  pollInterval?: number;
}

type ButtonKind = 'pause' | 'resume' | 'cancel' | 'open' | 'reveal' | 'remove';

const BUTTONS: { kind: ButtonKind; icon: LabIcon; verb: string }[] = [
  { kind: 'pause', icon: pauseIcon, verb: 'Pause upload of' },
  { kind: 'resume', icon: runIcon, verb: 'Resume upload of' },
  { kind: 'open', icon: launchIcon, verb: 'Open' },
  { kind: 'reveal', icon: folderIcon, verb: 'Show in file browser:' },
  { kind: 'cancel', icon: stopIcon, verb: 'Cancel upload of' },
  { kind: 'remove', icon: closeIcon, verb: 'Remove from the list:' }
];

/** What one row shows, whichever side it comes from. */
interface IRowView {
  key: string;
  name: string;
  path: string;
  state: string;
  fraction: number;
  status: string;
  tooltip: string;
  buttons: Set<ButtonKind>;
  /** Where the file landed (Open, Show in file browser). */
  landed: string | null;
}

/** Ids of the rows' status lines (aria-describedby), unique in the page. */
let statusIds = 0;

/** Everything `_updateRow` draws from a view, as one string. */
function viewSignature(view: IRowView): string {
  return JSON.stringify([
    view.state,
    view.name,
    view.path,
    view.fraction,
    view.status,
    view.tooltip,
    [...view.buttons].sort()
  ]);
}

export class UploadPanel extends Panel {
  constructor(options: IUploadPanelOptions) {
    super();
    this._options = options;
    this._uploader = options.uploader;
    this._dismissed = new DismissedIds(typeof localStorage === 'undefined' ? null : localStorage);
    this.addClass('jp-TusUploads');
    this.id = `jp-tus-uploads-${statusIds++}`;
    this.node.setAttribute('role', 'region');
    const headingId = `${this.id}-heading`;
    this.node.setAttribute('aria-labelledby', headingId);

    const header = new Toolbar();
    header.addClass('jp-TusUploads-header');
    const heading = new Widget({ node: document.createElement('h2') });
    heading.addClass('jp-TusUploads-title');
    heading.node.id = headingId;
    heading.node.textContent = 'Uploads';
    heading.node.tabIndex = -1;
    this._heading = heading.node;
    header.addItem('title', heading);
    header.addItem('spacer', Toolbar.createSpacerItem());
    const refresh = new ToolbarButton({
      icon: refreshIcon,
      tooltip: "Read the server's list of uploads again",
      label: '',
      onClick: () => void this.refresh()
    });
    refresh.addClass('jp-TusUploads-refresh');
    header.addItem('refresh', refresh);
    const clear = new ToolbarButton({
      icon: closeIcon,
      label: 'Clear finished',
      tooltip: 'Remove finished and cancelled uploads from this list',
      onClick: () => this.clearFinished()
    });
    clear.addClass('jp-TusUploads-clear');
    header.addItem('clear', clear);
    this.addWidget(header);

    const body = new Widget();
    body.addClass('jp-TusUploads-body');
    this._list = document.createElement('ul');
    this._list.className = 'jp-TusUploads-list';
    this._list.setAttribute('aria-labelledby', headingId);
    this._live = document.createElement('div');
    this._live.className = 'jp-TusUploads-live';
    this._live.setAttribute('aria-live', 'polite');
    this._live.setAttribute('role', 'status');
    body.node.append(this._list, this._live);
    this.addWidget(body);

    this._uploader.changed.connect(this._onChanged, this);
    this._render();
  }

  /** The server's uploads as last read. */
  get serverUploads(): readonly IServerUpload[] {
    return this._server;
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this._uploader.changed.disconnect(this._onChanged, this);
    window.clearInterval(this._poll);
    super.dispose();
  }

  /** Read the server's list again (on open, after an upload ends, on a slow poll). */
  async refresh(): Promise<void> {
    if (this._fetching) {
      this._again = true;
      return;
    }
    this._fetching = true;
    try {
      // Enough finished ones for the rows shown (MAX_FINISHED_ROWS) once this page's own
      // and the dismissed ones are left out: not a day of uploads every 15 s.
      const own = this._uploader.items.filter(i => i.uploadId).length;
      const limit = MAX_FINISHED_ROWS + own + this._dismissed.set.size + this._terminated.size;
      const listed = await fetchServerUploads(
        this._uploader.endpoint,
        this._options.headers(),
        limit
      );
      if (listed) {
        this._server = listed;
        // How many uploads the server listed last (tests wait for the first read).
        this.node.dataset.serverUploads = String(this._server.length);
        this._render();
      }
    } finally {
      this._fetching = false;
      if (this._again) {
        this._again = false;
        void this.refresh();
      }
    }
  }

  /** Remove finished and cancelled rows (this page's, and the server's, for good). */
  clearFinished(): void {
    // The server lists this page's finished uploads too: they go for good as well.
    this._dismissed.add(
      ...this._uploader.items
        .filter(i => i.state === 'done' && i.uploadId)
        .map(i => i.uploadId as string)
    );
    this._uploader.clearFinished();
    this._dismissed.add(...this._server.filter(isFinished).map(u => u.id));
    this._render();
  }

  /** Move the keyboard focus to the panel (the status-bar item's click). */
  focusPanel(): void {
    const first = this._list.querySelector<HTMLButtonElement>('button:not([hidden])');
    (first ?? this._heading).focus();
  }

  protected onAfterAttach(msg: any): void {
    super.onAfterAttach(msg);
    void this.refresh();
    const every = this._options.pollInterval ?? 15_000;
    window.clearInterval(this._poll);
    this._poll = window.setInterval(() => {
      if (this.isVisible && document.visibilityState !== 'hidden') {
        void this.refresh();
      }
    }, every);
  }

  protected onBeforeDetach(msg: any): void {
    window.clearInterval(this._poll);
    super.onBeforeDetach(msg);
  }

  protected onAfterShow(msg: any): void {
    super.onAfterShow(msg);
    void this.refresh();
  }

  private _onChanged(_: unknown, item: UploadItem | null): void {
    if (item) {
      const before = this._states.get(item.id);
      if (before !== item.state) {
        this._states.set(item.id, item.state);
        this._announce(item, before);
        if (item.state === 'cancelled' && item.uploadId) {
          // Terminated (the DELETE may still be under way): never listed from the server.
          this._terminated.add(item.uploadId);
        }
        if (
          ['done', 'failed', 'cancelled'].includes(item.state) &&
          !this._uploader.items.some(i => ['queued', 'uploading', 'retrying'].includes(i.state))
        ) {
          // The server's word on them (and on the others), once a drop has ended: not
          // once per file of a drop of many small files.
          void this.refresh();
        }
      }
      if (item.question) {
        this._asked.add(item.id);
      } else if (item.state === 'uploading') {
        this._asked.delete(item.id);
      }
      if (item.state === 'cancelled' && this._asked.has(item.id)) {
        // "Cancel" to the overwrite question: no row at all.
        this._asked.delete(item.id);
        void this._uploader.cancel(item);
        return;
      }
    }
    this._schedule(item);
  }

  /** Re-render at once when the last render is 200 ms old, else 200 ms after it: a click
   * shows at once, while progress events and a drop of many small files (hundreds of
   * changes a second) cost five renders a second, not one per change (issue 10). */
  private _schedule(_item: UploadItem | null): void {
    if (this._timer !== null) {
      return;
    }
    const wait = this._rendered + 200 - Date.now();
    if (wait <= 0) {
      this._rendered = Date.now();
      this._render();
      return;
    }
    this._timer = window.setTimeout(() => {
      this._timer = null;
      this._rendered = Date.now();
      this._render();
    }, wait);
  }

  /** One polite announcement per state change that matters; uploads landing together
   * (a drop of many files) are said once when the burst is over. */
  private _announce(item: UploadItem, before: string | undefined): void {
    if (item.state === 'done') {
      this._landed.push({ name: item.name, folder: item.folder });
      window.clearTimeout(this._landedTimer);
      this._landedTimer = window.setTimeout(() => {
        this.announce(doneAnnouncement(this._landed));
        this._landed = [];
      }, 500);
      return;
    }
    const text = announcement(item, before, before === 'queued' && this._asked.has(item.id));
    if (text) {
      this.announce(text);
    }
  }

  /** Say `text` through the live region (screen readers read it once). */
  announce(text: string): void {
    this._live.textContent = text;
  }

  /** Rows not shown: an upload waiting for the overwrite question's answer. */
  private _hidden(item: UploadItem): boolean {
    return item.state === 'queued' && (!!item.question || this._asked.has(item.id));
  }

  private _view(row: Row<UploadItem>, now: number): IRowView {
    if (row.kind === 'local') {
      const item = row.item;
      const buttons = new Set<ButtonKind>();
      const s = item.state as string;
      if (s === 'uploading' || s === 'retrying') {
        buttons.add('pause');
      }
      if (s === 'paused' || s === 'failed' || s === 'interrupted') {
        buttons.add('resume');
      }
      if (s === 'done') {
        buttons.add('open').add('reveal');
      }
      if (s === 'done' || s === 'cancelled') {
        buttons.add('remove');
      } else if (s !== 'elsewhere') {
        buttons.add('cancel');
      }
      const status = statusLine(item, now);
      const landed = s === 'done' ? (item.landedPath ?? item.path) : null;
      return {
        key: row.key,
        name: item.name,
        path: item.path,
        state: s,
        fraction: item.fraction,
        status: this._errors.get(row.key) ? `${status} · ${this._errors.get(row.key)}` : status,
        tooltip: item.error || status,
        buttons,
        landed
      };
    }
    const u = row.upload;
    const state = serverRowState(u, now);
    const buttons = new Set<ButtonKind>();
    if (state === 'interrupted') {
      buttons.add('resume').add('cancel');
    }
    if (u.state === 'done' && u.landed_path) {
      buttons.add('open').add('reveal');
    }
    if (isFinished(u)) {
      buttons.add('remove');
    }
    const error = this._errors.get(row.key);
    const status = serverStatusLine(u, now);
    return {
      key: row.key,
      name: nameOf(u),
      path: u.destination ?? '',
      state,
      fraction: serverFraction(u),
      status: error ? `${status} · ${error}` : status,
      tooltip: error || u.message || status,
      buttons,
      landed: u.state === 'done' ? u.landed_path : null
    };
  }

  private _render(): void {
    const now = Date.now();
    const rows = this._mergedRows();
    this._rows = new Map(rows.map(r => [r.key, r] as [string, Row<UploadItem>]));
    const views: IRowView[] = [];
    const seen = new Set<UploadBatch>();
    const focused = document.activeElement as HTMLElement | null;
    const focusedRow = focused?.closest<HTMLLIElement>('.jp-TusUpload') ?? null;
    const focusedKey = focusedRow && this._list.contains(focusedRow) ? focusedRow.dataset.key : '';
    const focusedIndex = focusedRow ? Array.from(this._list.children).indexOf(focusedRow) : -1;
    for (const row of rows) {
      // A drop (or pick) of several files gets a row with its total above its files.
      const batch = row.kind === 'local' ? row.item.batch : undefined;
      if (batch && batch.files > 1 && !seen.has(batch)) {
        seen.add(batch);
        views.push(this._batchView(batch));
      }
      if (
        row.kind === 'local' &&
        batch &&
        quietInBatch(row.item.state, batch.files, row.key === focusedKey)
      ) {
        continue; // counted in the batch's row
      }
      views.push(this._view(row, now));
    }
    this.node.classList.toggle('jp-mod-empty', views.length === 0);
    const existing = new Map<string, HTMLLIElement>();
    for (const li of Array.from(this._list.children) as HTMLLIElement[]) {
      existing.set(li.dataset.key!, li);
    }
    const keep = new Set<string>();
    views.forEach((view, index) => {
      keep.add(view.key);
      let li = existing.get(view.key);
      if (!li) {
        li = this._createRow(view);
      }
      if (this._list.children[index] !== li) {
        this._list.insertBefore(li, this._list.children[index] ?? null);
      }
      // A drop of hundreds of files changes a few rows per render: the others stay as
      // they are (no DOM work for them).
      const drawn = viewSignature(view);
      if (this._drawn.get(li) !== drawn) {
        this._drawn.set(li, drawn);
        this._updateRow(li, view);
      }
    });
    let removedFocus = false;
    for (const [key, li] of existing) {
      if (!keep.has(key)) {
        removedFocus = removedFocus || li === focusedRow;
        li.remove();
      }
    }
    // Keep the keyboard where it was: on the row's next control when the button pressed
    // went away (Pause becomes Resume), on the next row when the row went away.
    if (focusedRow && focused && this._list.contains(focusedRow) && focused.hidden) {
      this._focusIn(focusedRow);
    } else if (removedFocus) {
      // The row now where it was (the one after it), else the nearest one above.
      const lis = Array.from(this._list.children) as HTMLLIElement[];
      const at = Math.min(Math.max(focusedIndex, 0), lis.length);
      const next = [...lis.slice(at), ...lis.slice(0, at).reverse()]
        .map(li =>
          li.querySelector<HTMLButtonElement>('.jp-TusUpload-buttons button:not([hidden])')
        )
        .find(button => button);
      if (next) {
        next.focus();
      } else {
        // The panel hides when empty: the file browser's listing is next.
        const root = this.parent?.node;
        const listing =
          root?.querySelector<HTMLElement>('.jp-DirListing-content [tabindex="0"]') ??
          root?.querySelector<HTMLElement>('.jp-DirListing');
        (listing ?? this._heading).focus();
      }
    }
  }

  /** The total of a batch: "120 of 200 files · 40% · 1.2 MiB of 3.0 MiB". */
  private _batchView(batch: UploadBatch): IRowView {
    const folders = new Set(batch.items.map(i => i.folder));
    const where = folders.size === 1 ? ` → ${displayFolder([...folders][0])}` : '';
    const name = `${batch.counted || batch.files} files${where}`;
    const state = batch.state;
    return {
      key: `batch:${batch.id}`,
      name,
      path: folders.size === 1 ? [...folders][0] : '',
      state,
      fraction: batch.fraction,
      status: batch.summary,
      tooltip: batch.summary,
      buttons: new Set(),
      landed: null
    };
  }

  private _mergedRows(): Row<UploadItem>[] {
    const items = this._uploader.items.filter(item => !this._hidden(item));
    const hidden = new Set([...this._dismissed.set, ...this._terminated]);
    return mergeRows(items, this._server, hidden);
  }

  private _focusIn(li: HTMLLIElement): void {
    li.querySelector<HTMLButtonElement>('.jp-TusUpload-buttons button:not([hidden])')?.focus();
  }

  private _createRow(view: IRowView): HTMLLIElement {
    const li = document.createElement('li');
    li.className = 'jp-TusUpload';
    li.dataset.key = view.key;
    const top = document.createElement('div');
    top.className = 'jp-TusUpload-top';
    const name = document.createElement('span');
    name.className = 'jp-TusUpload-name';
    name.textContent = view.name;
    const buttons = document.createElement('span');
    buttons.className = 'jp-TusUpload-buttons';
    for (const { kind, icon } of BUTTONS) {
      const button = document.createElement('button');
      button.type = 'button';
      button.className = `jp-ToolbarButtonComponent jp-mod-minimal jp-Button jp-TusUpload-${kind}`;
      button.dataset.kind = kind;
      button.append(icon.element({ tag: 'span', className: 'jp-ToolbarButtonComponent-icon' }));
      button.hidden = true;
      button.onclick = () => this._click(li.dataset.key!, kind);
      buttons.append(button);
    }
    top.append(name, buttons);
    const bar = document.createElement('progress');
    bar.className = 'jp-TusUpload-bar';
    bar.max = 1;
    bar.value = 0;
    const status = document.createElement('div');
    status.className = 'jp-TusUpload-status';
    status.id = `${this.id}-status-${statusIds++}`;
    bar.setAttribute('aria-describedby', status.id);
    li.append(top, bar, status);
    return li;
  }

  private _updateRow(li: HTMLLIElement, view: IRowView): void {
    li.dataset.state = view.state;
    li.dataset.source = view.key.split(':')[0] === 'server' ? 'server' : 'page';
    li.classList.toggle('jp-TusUpload-batch', view.key.startsWith('batch:'));
    const name = li.querySelector('.jp-TusUpload-name') as HTMLElement;
    name.textContent = view.name;
    name.title = `/${view.path}`;
    const bar = li.querySelector('.jp-TusUpload-bar') as HTMLProgressElement;
    bar.value = view.fraction;
    bar.setAttribute('aria-label', `Upload of ${view.name}`);
    bar.setAttribute('aria-valuetext', `${formatPercent(view.fraction)}, ${view.state}`);
    for (const { kind, verb } of BUTTONS) {
      const button = li.querySelector(`.jp-TusUpload-${kind}`) as HTMLButtonElement;
      const label =
        kind === 'resume' && view.state === 'interrupted' && view.key.startsWith('server:')
          ? `Resume upload of ${view.name} (pick the file again)`
          : `${verb} ${view.name}`;
      if (button.getAttribute('aria-label') !== label) {
        button.setAttribute('aria-label', label);
        button.title = label;
      }
      button.hidden = !view.buttons.has(kind);
    }
    const status = li.querySelector('.jp-TusUpload-status') as HTMLElement;
    if (status.textContent !== view.status) {
      status.textContent = view.status;
    }
    status.title = view.tooltip;
  }

  private _click(key: string, kind: ButtonKind): void {
    const row = this._rows.get(key);
    if (!row) {
      return;
    }
    this._errors.delete(key);
    if (row.kind === 'local') {
      const item = row.item;
      switch (kind) {
        case 'pause':
          this._uploader.pause(item);
          break;
        case 'resume':
          void this._uploader.resume(item, () => this._options.pickFile(item.name));
          break;
        case 'remove':
          if (item.uploadId) {
            this._dismissed.add(item.uploadId);
          }
          void this._uploader.cancel(item);
          break;
        case 'cancel':
          void this._uploader.cancel(item);
          break;
        case 'open':
          this._options.open(item.landedPath ?? item.path);
          break;
        case 'reveal':
          this._options.reveal(item.landedPath ?? item.path);
          break;
      }
      return;
    }
    const u = row.upload;
    switch (kind) {
      case 'resume':
        void this._resumeServer(key, u);
        break;
      case 'cancel':
        void this._terminate(u);
        break;
      case 'remove':
        this._dismissed.add(u.id);
        this._render();
        break;
      case 'open':
        if (u.landed_path) {
          this._options.open(u.landed_path);
        }
        break;
      case 'reveal':
        if (u.landed_path) {
          this._options.reveal(u.landed_path);
        }
        break;
    }
  }

  /** Resume an upload this page did not start: the user picks the same file again. */
  private async _resumeServer(key: string, u: IServerUpload): Promise<void> {
    const file = await this._options.pickFile(nameOf(u));
    if (!file) {
      return;
    }
    const why = pickedFileMismatch(u, file);
    if (why) {
      this._errors.set(key, why);
      this.announce(why);
      this._render();
      return;
    }
    try {
      await this._options.adopt(u, file);
    } catch (err) {
      this._errors.set(key, String((err as Error)?.message ?? err));
      this._render();
    }
  }

  /** Cancel an upload this page did not start: terminate it on the server. */
  private async _terminate(u: IServerUpload): Promise<void> {
    try {
      const response = await fetch(new URL(u.url, location.href).href, {
        method: 'DELETE',
        headers: { ...this._options.headers(), 'Tus-Resumable': '1.0.0' },
        credentials: 'same-origin'
      });
      if (response.ok || response.status === 404 || response.status === 410) {
        this.announce(`Upload of ${nameOf(u)} cancelled`);
      }
    } catch (err) {
      console.warn('jupyter-tus: could not terminate', u.url, err);
    }
    this._server = this._server.filter(s => s.id !== u.id);
    this._render();
    void this.refresh();
  }

  private _options: IUploadPanelOptions;
  private _uploader: TusUploader;
  private _list: HTMLUListElement;
  private _live: HTMLElement;
  private _heading: HTMLElement;
  private _timer: number | null = null;
  private _rendered = 0;
  /** What each row shows now (`viewSignature`). */
  private _drawn = new WeakMap<HTMLLIElement, string>();
  private _poll = 0;
  private _server: IServerUpload[] = [];
  private _fetching = false;
  private _again = false;
  private _dismissed: DismissedIds;
  private _rows = new Map<string, Row<UploadItem>>();
  private _states = new Map<number, string>();
  /** Uploads that were asked the overwrite question and have not started since. */
  private _asked = new Set<number>();
  /** A row's own message (a picked file that does not match). */
  private _errors = new Map<string, string>();
  /** Uploads landed since the last announcement. */
  private _landed: { name: string; folder: string }[] = [];
  private _landedTimer = 0;
  /** Uploads cancelled here (their server record goes away). */
  private _terminated = new Set<string>();
}
