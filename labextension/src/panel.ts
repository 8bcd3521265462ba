/**
 * The "Uploads" panel under the file browser's listing: one row per upload with a
 * progress bar, bytes, speed and time left, and pause / resume / cancel buttons.
 */
import { Widget } from '@lumino/widgets';

import { statusLine } from './core';
import { TusUploader, UploadItem } from './uploader';

export class UploadPanel extends Widget {
  constructor(uploader: TusUploader, pickFile: (item: UploadItem) => Promise<File | null>) {
    super();
    this._uploader = uploader;
    this._pickFile = pickFile;
    this.addClass('jp-TusUploads');
    this.id = `jp-tus-uploads-${Private.count++}`;

    const header = document.createElement('div');
    header.className = 'jp-TusUploads-header';
    const title = document.createElement('span');
    title.className = 'jp-TusUploads-title';
    title.textContent = 'Uploads';
    const clear = document.createElement('button');
    clear.className = 'jp-TusUploads-clear';
    clear.textContent = 'Clear finished';
    clear.title = 'Remove finished and cancelled uploads from this list';
    clear.onclick = () => uploader.clearFinished();
    header.append(title, clear);
    this._list = document.createElement('ul');
    this._list.className = 'jp-TusUploads-list';
    this.node.append(header, this._list);

    uploader.changed.connect(this._schedule, this);
    this._render();
  }

  dispose(): void {
    this._uploader.changed.disconnect(this._schedule, this);
    super.dispose();
  }

  /** Re-render at most every 250 ms (progress events come much faster). */
  private _schedule(_: unknown, item: UploadItem | null): void {
    if (!item || item.state !== 'uploading') {
      this._render();
      return;
    }
    if (this._timer === null) {
      this._timer = window.setTimeout(() => {
        this._timer = null;
        this._render();
      }, 250);
    }
  }

  private _render(): void {
    const items = this._uploader.items;
    this.node.classList.toggle('jp-mod-empty', items.length === 0);
    const rows = new Map<number, HTMLLIElement>();
    for (const li of Array.from(this._list.children) as HTMLLIElement[]) {
      rows.set(Number(li.dataset.id), li);
    }
    const keep = new Set<number>();
    items.forEach((item, index) => {
      keep.add(item.id);
      let li = rows.get(item.id);
      if (!li) {
        li = this._createRow(item);
      }
      if (this._list.children[index] !== li) {
        this._list.insertBefore(li, this._list.children[index] ?? null);
      }
      this._updateRow(li, item);
    });
    for (const [id, li] of rows) {
      if (!keep.has(id)) {
        li.remove();
      }
    }
  }

  private _createRow(item: UploadItem): HTMLLIElement {
    const li = document.createElement('li');
    li.className = 'jp-TusUpload';
    li.dataset.id = String(item.id);
    li.innerHTML = `
      <div class="jp-TusUpload-top">
        <span class="jp-TusUpload-name"></span>
        <span class="jp-TusUpload-buttons">
          <button class="jp-TusUpload-pause" title="Pause">Pause</button>
          <button class="jp-TusUpload-resume" title="Resume">Resume</button>
          <button class="jp-TusUpload-cancel" title="Cancel and delete the uploaded part">Cancel</button>
        </span>
      </div>
      <progress class="jp-TusUpload-bar" max="1" value="0"></progress>
      <div class="jp-TusUpload-status"></div>`;
    const name = li.querySelector('.jp-TusUpload-name') as HTMLElement;
    name.textContent = item.name;
    name.title = `/${item.path}`;
    (li.querySelector('.jp-TusUpload-pause') as HTMLButtonElement).onclick = () =>
      this._uploader.pause(item);
    (li.querySelector('.jp-TusUpload-resume') as HTMLButtonElement).onclick = () =>
      void this._uploader.resume(item, () => this._pickFile(item));
    (li.querySelector('.jp-TusUpload-cancel') as HTMLButtonElement).onclick = () =>
      void this._uploader.cancel(item);
    return li;
  }

  private _updateRow(li: HTMLLIElement, item: UploadItem): void {
    li.dataset.state = item.state;
    const bar = li.querySelector('.jp-TusUpload-bar') as HTMLProgressElement;
    bar.value = item.fraction;
    const pause = li.querySelector('.jp-TusUpload-pause') as HTMLButtonElement;
    const resume = li.querySelector('.jp-TusUpload-resume') as HTMLButtonElement;
    const cancel = li.querySelector('.jp-TusUpload-cancel') as HTMLButtonElement;
    pause.hidden = item.state !== 'uploading' && item.state !== 'retrying';
    resume.hidden = !['paused', 'failed', 'interrupted'].includes(item.state);
    resume.title =
      item.state === 'interrupted'
        ? item.handle
          ? 'Resume (the browser kept access to the file)'
          : 'Pick the same file again to resume'
        : 'Resume';
    const finished = item.state === 'done' || item.state === 'cancelled';
    cancel.textContent = finished ? '×' : 'Cancel';
    cancel.title = finished ? 'Remove from the list' : 'Cancel and delete the uploaded part';

    const status = li.querySelector('.jp-TusUpload-status') as HTMLElement;
    status.textContent = statusLine(item, Date.now());
    status.title = item.error || (status.textContent ?? '');
  }

  private _uploader: TusUploader;
  private _pickFile: (item: UploadItem) => Promise<File | null>;
  private _list: HTMLUListElement;
  private _timer: number | null = null;
}

namespace Private {
  export let count = 0;
}
