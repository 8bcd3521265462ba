/**
 * What shows of the uploads outside the Uploads panel: the status-bar item while uploads
 * run (count and %, a click opens the panel), JupyterLab notifications when an upload
 * finishes (one for a batch) or fails, and a warning before leaving the page while bytes
 * are in flight. A view over `TusUploader`'s signal, like the panel.
 */
import { Notification } from '@jupyterlab/apputils';
import { PathExt } from '@jupyterlab/coreutils';
import { IStatusBar } from '@jupyterlab/statusbar';
import { Signal } from '@lumino/signaling';
import { Widget } from '@lumino/widgets';

import { displayFolder } from './core';
import { progressSummary } from './serverlist';
import { TusUploader, UploadItem } from './uploader';

/**
 * What shows outside the panel: the status-bar item while uploads run, a notification
 * when an upload finishes (one for a batch) or fails, and a warning before leaving the
 * page while bytes are in flight.
 */
export function watchUploads(
  uploader: TusUploader,
  opts: {
    open: (path: string) => void;
    reveal: (path: string) => void;
    showPanel: () => void;
    statusBar: IStatusBar | null;
  }
): void {
  const item = new Widget();
  item.addClass('jp-TusStatusItem');
  item.node.setAttribute('role', 'button');
  item.node.tabIndex = 0;
  item.node.title = 'Show the uploads';
  item.node.onclick = () => opts.showPanel();
  item.node.onkeydown = (ev: KeyboardEvent) => {
    if (ev.key === 'Enter' || ev.key === ' ') {
      ev.preventDefault();
      opts.showPanel();
    }
  };
  const activeChanged = new Signal<Widget, void>(item);
  let active = false;
  opts.statusBar?.registerStatusItem('jupyter-tus:uploads', {
    item,
    align: 'left',
    rank: 5,
    isActive: () => active,
    activeStateChanged: activeChanged
  });

  const states = new Map<number, string>();
  let finished: UploadItem[] = [];
  const update = () => {
    const summary = progressSummary(uploader.items);
    if (summary) {
      item.node.textContent = summary.text;
      item.node.setAttribute('aria-label', `${summary.text}: show the uploads`);
    }
    if (!!summary !== active) {
      active = !!summary;
      activeChanged.emit();
    }
    if (!summary && finished.length) {
      notifyDone(finished, opts);
      finished = [];
    }
  };
  let timer: number | null = null;
  let updated = 0;
  uploader.changed.connect((_, changed) => {
    let wait = 500;
    if (changed && states.get(changed.id) !== changed.state) {
      states.set(changed.id, changed.state);
      if (changed.state === 'done') {
        finished.push(changed);
      } else if (changed.state === 'failed') {
        Notification.error(`Upload of ${changed.name} failed: ${changed.error}`, {
          autoClose: false,
          actions: [{ label: 'Show uploads', callback: () => opts.showPanel() }]
        });
      }
      // A change of state shows at once, but at most five times a second: a drop of
      // many small files changes hundreds of states a second (issue 10).
      wait = Math.max(0, updated + 200 - Date.now());
      if (wait === 0 && timer === null) {
        updated = Date.now();
        update();
        return;
      }
    }
    if (timer === null) {
      timer = window.setTimeout(() => {
        timer = null;
        updated = Date.now();
        update();
      }, wait);
    }
  });

  window.addEventListener('beforeunload', (ev: BeforeUnloadEvent) => {
    if (uploader.items.some(i => i.state === 'uploading' || i.state === 'retrying')) {
      // The server keeps what arrived (Resume continues), but the transfer stops.
      ev.preventDefault();
      ev.returnValue = '';
    }
  });
}

function notifyDone(
  done: UploadItem[],
  opts: { open: (path: string) => void; reveal: (path: string) => void; showPanel: () => void }
): void {
  if (done.length === 1) {
    const [one] = done;
    const path = one.landedPath ?? one.path;
    Notification.success(`${one.name} uploaded to ${displayFolder(PathExt.dirname(path))}`, {
      autoClose: 10000,
      actions: [
        { label: 'Open', callback: () => opts.open(path) },
        { label: 'Show in file browser', callback: () => opts.reveal(path) }
      ]
    });
    return;
  }
  const folders = new Set(done.map(i => i.folder));
  const where = folders.size === 1 ? ` to ${displayFolder([...folders][0])}` : '';
  const first = done[0].landedPath ?? done[0].path;
  Notification.success(`${done.length} files uploaded${where}`, {
    autoClose: 10000,
    actions: [
      { label: 'Show in file browser', callback: () => opts.reveal(first) },
      { label: 'Show uploads', callback: () => opts.showPanel() }
    ]
  });
}
