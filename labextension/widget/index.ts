/**
 * jupyter-tus UploadWidget front end (anywidget ESM, bundled with tus-js-client).
 *
 * Files go from the browser straight to the tus endpoint of the Jupyter server over
 * HTTP ({base_url}api/tus/uploads), never through the kernel's comm channel. Only the
 * id of each finished upload is sent to the kernel (a model message), where the Python
 * side fetches its FileInfo from the store.
 */
import * as tus from 'tus-js-client';

import {
  LANDED_PATH_HEADER,
  authHeaders,
  describeLanding,
  formatBytes,
  formatDuration,
  joinPath,
  normalizeFolder,
  parseLandedPath
} from '../src/core';

/** The part of anywidget's model this view uses. */
interface Model {
  get(name: string): any;
  on(event: string, callback: () => void): void;
  off(event: string, callback: () => void): void;
  send(content: Record<string, unknown>): void;
}

interface RenderProps {
  model: Model;
  el: HTMLElement;
}

const STYLE = `
.jtus { font-family: var(--jp-ui-font-family, sans-serif); font-size: var(--jp-ui-font-size1, 13px);
  color: var(--jp-ui-font-color1, #222); max-width: 720px; }
.jtus-drop { border: 2px dashed var(--jp-border-color1, #bbb); border-radius: 6px; padding: 14px;
  text-align: center; cursor: pointer; }
.jtus-drop.jtus-over { border-color: var(--jp-brand-color1, #1976d2); background: var(--jp-layout-color2, #eef); }
.jtus-message { margin: 6px 0; color: var(--jp-error-color1, #c62828); }
.jtus-message:empty, .jtus-interrupted:empty { display: none; }
.jtus-interrupted { margin: 6px 0; color: var(--jp-ui-font-color2, #555); }
.jtus-file { display: grid; grid-template-columns: 1fr auto; gap: 2px 8px; margin: 8px 0; }
.jtus-name { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; font-weight: 600; }
.jtus-file progress { width: 100%; grid-column: 1 / span 2; height: 10px; }
.jtus-status { color: var(--jp-ui-font-color2, #555); grid-column: 1 / span 2; }
.jtus-file[data-state="error"] .jtus-status { color: var(--jp-error-color1, #c62828); }
.jtus-file button, .jtus button { margin-left: 4px; }
`;

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

function endpointFor(model: Model, config: Record<string, any>): string {
  const explicit: string = model.get('endpoint');
  const url = explicit || baseUrl(config) + 'api/tus/uploads';
  return new URL(url, window.location.href).href;
}

/** Headers every request needs: XSRF for cookie auth, the token when the page has one. */
function requestHeaders(config: Record<string, any>): Record<string, string> {
  return authHeaders(document.cookie, config.token, config.xsrfToken);
}

/** null when the endpoint answers as a tus server, else why not, in plain words. */
async function probe(endpoint: string, headers: Record<string, string>): Promise<string | null> {
  const hint =
    'is the jupyter-tus server extension installed and enabled on the Jupyter server ' +
    '(jupyter server extension list)?';
  let response: Response;
  try {
    response = await fetch(endpoint, {
      method: 'OPTIONS',
      headers: { ...headers, 'Tus-Resumable': '1.0.0' },
      credentials: 'same-origin'
    });
  } catch (err) {
    return `Uploads are not possible: the upload endpoint ${endpoint} cannot be reached (${err}). ${hint}`;
  }
  if (response.headers.get('Tus-Version') || response.headers.get('Tus-Resumable')) {
    return null;
  }
  if (response.status === 401 || response.status === 403) {
    return `Uploads are not possible: the server refused access to ${endpoint} (${response.status}). Reload the page to log in again.`;
  }
  return `Uploads are not possible: ${endpoint} is not a tus upload endpoint (HTTP ${response.status}); ${hint}`;
}

/** A tus-js-client error in plain words: the server's own message when it sent one. */
function describe(err: Error): string {
  const detailed = err as tus.DetailedError;
  const response = detailed.originalResponse;
  if (!response) {
    return `${err.message || err} (the server could not be reached)`;
  }
  const status = response.getStatus();
  let message = '';
  try {
    message = JSON.parse(response.getBody() || '{}').message || '';
  } catch {
    message = (response.getBody() || '').slice(0, 200);
  }
  let hint = '';
  if (status === 409 && detailed.originalRequest?.getMethod() === 'POST') {
    hint = ' Use overwrite=True to replace it.';
  } else if (status === 413) {
    hint = ' The file or a chunk is too large for the server or a proxy: try a smaller chunk_size.';
  } else if (status === 401 || status === 403) {
    hint = ' Reload the page to log in again.';
  }
  return `HTTP ${status}${message ? ': ' + message : ''}.${hint}`;
}

function button(label: string, onClick: () => void): HTMLButtonElement {
  const b = document.createElement('button');
  b.type = 'button';
  b.textContent = label;
  b.className = 'jtus-' + label.toLowerCase();
  b.addEventListener('click', e => {
    e.stopPropagation();
    onClick();
  });
  return b;
}

/** One file's upload and its row in the widget. */
class Transfer {
  readonly row: HTMLElement;
  private upload: tus.Upload;
  private bar: HTMLProgressElement;
  private status: HTMLElement;
  private pauseButton: HTMLButtonElement;
  private cancelButton: HTMLButtonElement;
  private samples: [number, number][] = [];
  private resumedFrom = 0;
  /** Where the server says the file landed (it differs when the name was taken). */
  private landedPath: string | null = null;
  private sent = 0;
  private total = 0;
  private ticker: number | undefined;

  constructor(
    private file: File,
    private model: Model,
    endpoint: string,
    private config: Record<string, any>
  ) {
    this.row = document.createElement('div');
    this.row.className = 'jtus-file';
    const name = document.createElement('div');
    name.className = 'jtus-name';
    name.textContent = file.name;
    name.title = file.name;
    const controls = document.createElement('div');
    this.pauseButton = button('Pause', () => this.togglePause());
    this.cancelButton = button('Cancel', () => void this.cancel());
    controls.append(this.pauseButton, this.cancelButton);
    this.bar = document.createElement('progress');
    this.bar.max = file.size || 1;
    this.bar.value = 0;
    this.status = document.createElement('div');
    this.status.className = 'jtus-status';
    this.row.append(name, controls, this.bar, this.status);
    this.setState('starting', 'Starting…');

    const path: string = model.get('path') || '';
    const overwrite: boolean = model.get('overwrite');
    const metadata: Record<string, string> = {
      filename: file.name,
      filetype: file.type || 'application/octet-stream'
    };
    if (path) {
      metadata.path = path;
    }
    if (overwrite) {
      metadata.overwrite = '1';
    }
    this.upload = new tus.Upload(file, {
      endpoint,
      chunkSize: model.get('chunk_size') || Infinity,
      retryDelays: [0, 1000, 3000, 5000, 10000, 20000, 30000],
      metadata,
      storeFingerprintForResuming: true,
      removeFingerprintOnSuccess: true,
      // The destination is part of what is resumed: the same file for another folder is
      // another upload.
      fingerprint: async (f: File, options: tus.UploadOptions) =>
        [
          'jupyter-tus',
          f.name,
          f.type,
          f.size,
          f.lastModified,
          options.endpoint,
          path,
          overwrite
        ].join('-'),
      onBeforeRequest: req => {
        // Read the cookie on every request: the server may rotate it.
        for (const [k, v] of Object.entries(requestHeaders(this.config))) {
          req.setHeader(k, v);
        }
      },
      onAfterResponse: (req, res) => {
        this.landedPath = parseLandedPath(res.getHeader(LANDED_PATH_HEADER)) ?? this.landedPath;
        // The first HEAD of a resumed upload says where this page took it up.
        if (
          req.getMethod() === 'HEAD' &&
          res.getStatus() === 200 &&
          !this.row.dataset.resumedFrom
        ) {
          this.resumedFrom = Number(res.getHeader('Upload-Offset') || 0);
          this.row.dataset.resumedFrom = String(this.resumedFrom);
        }
      },
      onUploadUrlAvailable: () => {
        const id = this.id();
        if (id) {
          this.row.dataset.uploadId = id;
        }
      },
      onShouldRetry: err => {
        // Retry what time may fix (network, 5xx, 423, an offset mismatch on PATCH), not a
        // refusal: a name clash at creation, a missing permission, a size limit.
        const status = err.originalResponse?.getStatus() ?? 0;
        if (status === 409) {
          return err.originalRequest?.getMethod() !== 'POST';
        }
        return status === 0 || status === 423 || status < 400 || status >= 500;
      },
      onProgress: (sent, total) => this.progress(sent, total),
      onSuccess: () => this.success(),
      onError: err => {
        this.setState('error', `Failed: ${describe(err)}`);
        this.pauseButton.textContent = 'Retry';
      }
    });
  }

  id(): string | null {
    const url = this.upload.url;
    return url ? url.replace(/\/+$/, '').split('/').pop() || null : null;
  }

  async start(): Promise<void> {
    try {
      const previous = await this.upload.findPreviousUploads();
      if (previous.length) {
        this.upload.resumeFromPreviousUpload(previous[0]);
        this.setState('starting', 'Resuming an earlier upload of this file…');
      }
    } catch {
      /* no storage: start afresh */
    }
    this.upload.start();
    // Refresh speed and time left even when no byte moves (a stalled link shows as such).
    this.ticker = window.setInterval(() => {
      if (this.row.dataset.state === 'uploading' && this.total) {
        this.progress(this.sent, this.total);
      }
    }, 1000);
  }

  private finish(): void {
    window.clearInterval(this.ticker);
  }

  private setState(state: string, text: string): void {
    this.row.dataset.state = state;
    this.status.textContent = text;
  }

  private progress(sent: number, total: number): void {
    this.sent = sent;
    this.total = total;
    const now = performance.now();
    this.samples.push([now, sent]);
    while (this.samples.length > 2 && now - this.samples[0][0] > 5000) {
      this.samples.shift();
    }
    const [t0, b0] = this.samples[0];
    const speed = now > t0 ? ((sent - b0) * 1000) / (now - t0) : 0;
    this.bar.max = total || 1;
    this.bar.value = sent;
    const resumed = this.resumedFrom ? ` · resumed at ${formatBytes(this.resumedFrom)}` : '';
    const rate =
      speed > 0
        ? ` · ${formatBytes(speed)}/s · ${formatDuration((total - sent) / speed)} left`
        : sent < total && now - t0 > 3000
          ? ' · stalled, waiting for the network…'
          : '';
    this.setState('uploading', `${formatBytes(sent)} of ${formatBytes(total)}${rate}${resumed}`);
  }

  private success(): void {
    this.finish();
    const id = this.id();
    this.bar.value = this.bar.max;
    this.pauseButton.disabled = true;
    this.cancelButton.disabled = true;
    this.model.send({
      type: 'complete',
      id,
      url: this.upload.url,
      filename: this.file.name,
      size: this.file.size,
      filetype: this.file.type
    });
    const resumed = this.resumedFrom ? ` (resumed at ${formatBytes(this.resumedFrom)})` : '';
    const intended = joinPath(normalizeFolder(this.model.get('path')), this.file.name);
    const where = describeLanding(intended, this.landedPath);
    this.setState('done', `Done: ${formatBytes(this.file.size)} → ${where}${resumed}`);
  }

  private togglePause(): void {
    const state = this.row.dataset.state;
    if (state === 'paused' || state === 'error') {
      this.pauseButton.textContent = 'Pause';
      this.setState('uploading', 'Resuming…');
      this.upload.start();
    } else {
      void this.upload.abort();
      this.pauseButton.textContent = 'Resume';
      this.setState(
        'paused',
        `Paused at ${formatBytes(this.bar.value)} of ${formatBytes(this.file.size)}`
      );
    }
  }

  async cancel(): Promise<void> {
    this.finish();
    this.pauseButton.disabled = true;
    this.cancelButton.disabled = true;
    try {
      // Terminate on the server (DELETE) and forget the fingerprint.
      await this.upload.abort(true);
      this.setState('cancelled', 'Cancelled');
    } catch (err) {
      this.setState('cancelled', `Cancelled (the server kept the partial upload: ${err})`);
    }
  }

  /** Stop sending without terminating: the upload stays resumable. */
  stop(): void {
    this.finish();
    if (this.row.dataset.state !== 'done' && this.row.dataset.state !== 'cancelled') {
      void this.upload.abort();
    }
  }
}

/** Uploads a page reload interrupted, from tus-js-client's fingerprint store. */
async function showInterrupted(target: HTMLElement, endpoint: string): Promise<void> {
  target.textContent = '';
  let previous: any[] = [];
  try {
    previous = await tus.defaultOptions.urlStorage.findAllUploads();
  } catch {
    return;
  }
  const mine = previous.filter(p => p.uploadUrl && String(p.uploadUrl).startsWith(endpoint));
  if (!mine.length) {
    return;
  }
  const title = document.createElement('div');
  title.textContent = 'Interrupted uploads (choose the same file again to resume):';
  target.append(title);
  for (const p of mine) {
    const line = document.createElement('div');
    line.className = 'jtus-interrupted-item';
    line.dataset.filename = p.metadata?.filename ?? '';
    const size = p.size === null || p.size === undefined ? '' : ` (${formatBytes(p.size)})`;
    line.textContent = `${p.metadata?.filename ?? p.uploadUrl}${size} `;
    line.append(
      button('Forget', () => {
        void tus.defaultOptions.urlStorage.removeUpload(p.urlStorageKey).then(() => line.remove());
      })
    );
    target.append(line);
  }
}

function render({ model, el }: RenderProps): () => void {
  const config = pageConfig();
  const endpoint = endpointFor(model, config);
  const root = document.createElement('div');
  root.className = 'jtus';
  const style = document.createElement('style');
  style.textContent = STYLE;
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
  const interrupted = document.createElement('div');
  interrupted.className = 'jtus-interrupted';
  const list = document.createElement('div');
  list.className = 'jtus-files';
  root.append(style, input, drop, message, interrupted, list);
  el.append(root);

  const transfers: Transfer[] = [];
  root.dataset.ready = 'checking';
  const available: Promise<boolean> = probe(endpoint, requestHeaders(config)).then(problem => {
    if (problem) {
      message.textContent = problem;
      drop.style.display = 'none';
      root.dataset.ready = 'unavailable';
      model.send({ type: 'unavailable', message: problem });
      return false;
    }
    root.dataset.ready = 'yes';
    void showInterrupted(interrupted, endpoint);
    return true;
  });

  const sync = () => {
    input.multiple = !!model.get('multiple');
    input.accept = model.get('accept') || '';
    const where = model.get('path') ? ` to ${model.get('path')}/` : '';
    label.textContent = `Drop files here or click to choose${where}`;
  };
  sync();
  for (const name of ['multiple', 'accept', 'path']) {
    model.on(`change:${name}`, sync);
  }

  const add = async (files: FileList | File[] | null) => {
    let chosen = Array.from(files || []);
    if (!chosen.length || !(await available)) {
      return;
    }
    if (!model.get('multiple')) {
      chosen = chosen.slice(0, 1);
    }
    for (const file of chosen) {
      const transfer = new Transfer(file, model, endpoint, config);
      transfers.push(transfer);
      list.append(transfer.row);
      void transfer.start();
    }
    // What was chosen again is no longer "interrupted": it resumes (or starts anew).
    const names = new Set(chosen.map(f => f.name));
    interrupted.querySelectorAll<HTMLElement>('.jtus-interrupted-item').forEach(item => {
      if (names.has(item.dataset.filename || '')) {
        item.remove();
      }
    });
    if (!interrupted.querySelector('.jtus-interrupted-item')) {
      interrupted.textContent = '';
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
    void add(e.dataTransfer ? Array.from(e.dataTransfer.files) : null);
  });

  return () => {
    for (const name of ['multiple', 'accept', 'path']) {
      model.off(`change:${name}`, sync);
    }
    for (const t of transfers) {
      t.stop();
    }
  };
}

export default { render };
