/**
 * jupyter-tus: the file browser's upload (toolbar button and drag-and-drop, both of
 * which call `FileBrowserModel.upload()`) goes through tus to `{base_url}api/tus/uploads`.
 */
import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { Dialog, showDialog, showErrorMessage } from '@jupyterlab/apputils';
import { PageConfig, PathExt, URLExt } from '@jupyterlab/coreutils';
import {
  FileBrowser,
  FileBrowserModel,
  IDefaultFileBrowser,
  IFileBrowserFactory
} from '@jupyterlab/filebrowser';
import { Contents, ServerConnection } from '@jupyterlab/services';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { IStatusBar } from '@jupyterlab/statusbar';
import { folderIcon } from '@jupyterlab/ui-components';

import {
  DEFAULT_SETTINGS,
  IUploadSettings,
  authHeaders,
  joinPath,
  normalizeFolder,
  normalizeSettings
} from './core';
import { HandleRegistry, IFileHandle, handlesSupported } from './handles';
import { UploadPanel } from './panel';
import { IServerUpload, folderOf } from './serverlist';
import { watchUploads } from './status';
import { EndpointCheck, TusUploader, probeEndpoint } from './uploader';

const PLUGIN_ID = 'jupyter-tus:plugin';

interface IExtraSettings {
  keepFileHandles: boolean;
  /** The upload button opens the File System Access picker (else a plain file input). */
  fileSystemAccessPicker: boolean;
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'Resumable tus uploads from the file browser.',
  autoStart: true,
  requires: [IFileBrowserFactory],
  optional: [IDefaultFileBrowser, ISettingRegistry, IStatusBar],
  activate: (
    app: JupyterFrontEnd,
    factory: IFileBrowserFactory,
    defaultBrowser: IDefaultFileBrowser | null,
    registry: ISettingRegistry | null,
    statusBar: IStatusBar | null
  ) => {
    addFolderCommand(app, factory, defaultBrowser);
    void setUp(app, factory, defaultBrowser, registry, statusBar);
  }
};

const UPLOAD_FOLDER = 'jupyter-tus:upload-folder';

/**
 * "Upload Folder…": a button beside the file browser's upload button (a toolbar item of
 * this plugin's settings, `jupyter.lab.toolbars`, so it can be hidden like any other)
 * and an entry of the listing's context menu. Enabled once the tus endpoint answers.
 */
function addFolderCommand(
  app: JupyterFrontEnd,
  factory: IFileBrowserFactory,
  defaultBrowser: FileBrowser | null
): void {
  app.commands.addCommand(UPLOAD_FOLDER, {
    label: args => (args.toolbar ? '' : 'Upload Folder…'),
    caption: 'Upload a folder (keeps its files and subfolders)',
    icon: folderIcon,
    isEnabled: () => document.body.dataset.jupyterTus === 'ready',
    execute: () => {
      const browser = factory.tracker.currentWidget ?? defaultBrowser;
      return browser ? uploadFolder(browser) : undefined;
    }
  });
  app.contextMenu.addItem({
    command: UPLOAD_FOLDER,
    selector: '.jp-DirListing-content',
    rank: 3
  });
}

async function setUp(
  app: JupyterFrontEnd,
  factory: IFileBrowserFactory,
  defaultBrowser: FileBrowser | null,
  registry: ISettingRegistry | null,
  statusBar: IStatusBar | null
): Promise<void> {
  const serverSettings = ServerConnection.makeSettings();
  const endpoint = URLExt.join(PageConfig.getBaseUrl(), 'api/tus/uploads');
  const headers = () => authHeaders(document.cookie, serverSettings.token);

  let settings: IUploadSettings = { ...DEFAULT_SETTINGS };
  const extra: IExtraSettings = { keepFileHandles: true, fileSystemAccessPicker: true };
  if (registry) {
    try {
      const loaded = await registry.load(PLUGIN_ID);
      const apply = () => {
        const c = loaded.composite as any;
        settings = normalizeSettings(c);
        extra.keepFileHandles = c.keepFileHandles !== false;
        extra.fileSystemAccessPicker = c.fileSystemAccessPicker !== false;
      };
      apply();
      loaded.changed.connect(apply);
    } catch (err) {
      console.warn('jupyter-tus: settings not loaded, using defaults', err);
    }
  }

  // Without the server extension, leave the stock upload alone.
  const check = await probeEndpoint(endpoint, headers());
  const missing = whyUnusable(endpoint, check);
  if (missing) {
    console.warn(
      `jupyter-tus: keeping JupyterLab's stock upload: ${missing}. ` +
        'Is the jupyter_tus server extension installed and enabled ' +
        '(jupyter server extension list)?'
    );
    document.body.dataset.jupyterTus = 'stock';
    return;
  }

  const contents = app.serviceManager.contents;
  const browsers = new Set<FileBrowser>();
  const uploader = new TusUploader({
    endpoint,
    headers,
    settings: () => settings,
    // Listing the folder (as the stock upload does) rather than probing the file keeps
    // a 404 out of the console for every new file; the uploader lists once per batch.
    // A file browser showing that folder (a drop on it) has its listing: no request. A
    // name taken since it was listed is refused by the server at creation (409, never
    // replaced), and the uploader asks then.
    listFolder: async folder => {
      for (const b of browsers) {
        if (!b.isDisposed && normalizeFolder(b.model.path) === folder) {
          return Array.from(b.model.items(), i => i.name);
        }
      }
      const listing = await contents.get(folder, { content: true });
      return (listing.content as Contents.IModel[]).map(i => i.name);
    },
    confirmOverwrite: async (name, folder) => {
      const result = await showDialog({
        title: 'Overwrite file?',
        body: `"${name}" already exists in /${folder}. Overwrite it?`,
        buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Overwrite' })]
      });
      return result.button.accept;
    },
    // One listing refresh per batch of files landed in a folder, not one per file.
    folderLanded: folder => {
      for (const b of browsers) {
        if (!b.isDisposed && normalizeFolder(b.model.path) === folder) {
          void b.model.refresh();
        }
      }
    }
  });

  // The server's chunk limit (max_chunk_size), before the first upload sends a body.
  uploader.limitChunks(check.ok ? check.maxChunkSize : null);

  // Handles of files the user dropped or picked, until their upload starts.
  const handles = new HandleRegistry();

  const patch = (browser: FileBrowser) => {
    if (browsers.has(browser)) {
      return;
    }
    browsers.add(browser);
    browser.disposed.connect(() => browsers.delete(browser));
    patchModel(browser.model, uploader, () => settings, handles, contents);
    if (handlesSupported()) {
      // Capture the File System Access handle of dropped files before the listing
      // turns them into plain Files (Chromium); the handle allows one-click resume.
      browser.node.addEventListener(
        'drop',
        (ev: DragEvent) => {
          if (extra.keepFileHandles) {
            handles.fromDrop(ev);
          }
        },
        true
      );
      // The toolbar's upload button opens the File System Access picker instead of a
      // plain file input, for the same reason.
      browser.toolbar.node.addEventListener(
        'click',
        (ev: MouseEvent) => {
          const target = ev.target as HTMLElement;
          const picker = (window as any).showOpenFilePicker;
          if (
            !extra.keepFileHandles ||
            !extra.fileSystemAccessPicker ||
            !picker ||
            !target.closest('.jp-id-upload')
          ) {
            return;
          }
          ev.preventDefault();
          ev.stopPropagation();
          void pickAndUpload(browser, handles);
        },
        true
      );
    }
  };

  const open = (path: string) => void app.commands.execute('docmanager:open', { path });
  const reveal = (path: string) => void revealInBrowser(app, defaultBrowser, path);
  let panel: UploadPanel | null = null;
  const showPanel = () => {
    if (!defaultBrowser || !panel) {
      return;
    }
    app.shell.activateById(defaultBrowser.id);
    panel.node.scrollIntoView({ block: 'nearest' });
    panel.focusPanel();
  };
  if (defaultBrowser) {
    patch(defaultBrowser);
    panel = new UploadPanel({
      uploader,
      pickFile: name => pickFile(name),
      headers,
      open,
      reveal,
      adopt: (upload, file) => adopt(uploader, upload, file)
    });
    defaultBrowser.addWidget(panel);
  }
  watchUploads(uploader, { open, reveal, showPanel, statusBar });
  factory.tracker.forEach(patch);
  factory.tracker.widgetAdded.connect((_, b) => patch(b));

  await uploader.restore();
  const interrupted = uploader.items.filter(i => i.state === 'interrupted').length;
  if (interrupted) {
    console.info(`jupyter-tus: ${interrupted} unfinished upload(s) can be resumed`);
  }
  console.info(`jupyter-tus: file browser uploads go through tus to ${endpoint}`);
  document.body.dataset.jupyterTus = 'ready';
  app.commands.notifyCommandChanged(UPLOAD_FOLDER);
}

/** Why the tus endpoint cannot be used, or '' when it answered like a tus server. */
function whyUnusable(endpoint: string, check: EndpointCheck): string {
  if (check.ok) {
    return '';
  }
  if (check.reason === 'unreachable') {
    return `OPTIONS ${endpoint} failed (${check.error})`;
  }
  if (check.reason === 'not-tus' && check.status >= 200 && check.status < 300) {
    return `${endpoint} is not a tus endpoint (no Tus-Version header)`;
  }
  return `OPTIONS ${endpoint} answered ${check.status}`;
}

function patchModel(
  model: FileBrowserModel,
  uploader: TusUploader,
  settings: () => IUploadSettings,
  handles: HandleRegistry,
  contents: Contents.IManager
): void {
  const stock = model.upload.bind(model);
  model.upload = async (file: File, path?: string): Promise<Contents.IModel> => {
    if ((model as any)._allowFileUploads === false || file.size < settings().sizeThreshold) {
      return stock(file, path);
    }
    const folder = normalizeFolder(path ?? model.path);
    const handle = await handles.take(file);
    const landed = await uploader.upload(file, folder, { handle });
    if (!landed) {
      return undefined as unknown as Contents.IModel;
    }
    // What the uploader knows of the landed file (no request per file: a drop of many
    // small files costs one request each, like the stock upload).
    const item = uploader.items.find(i => i.file === file);
    const landedPath = item?.landedPath ?? joinPath(folder, file.name);
    const now = new Date().toISOString();
    return {
      name: landedPath.slice(landedPath.lastIndexOf('/') + 1),
      path: landedPath,
      type: 'file',
      writable: true,
      created: now,
      last_modified: now,
      mimetype: file.type || 'application/octet-stream',
      content: null,
      format: null,
      size: file.size
    } as Contents.IModel;
  };
}

async function pickAndUpload(browser: FileBrowser, handles: HandleRegistry): Promise<void> {
  let files: File[];
  try {
    const picked: IFileHandle[] = await (window as any).showOpenFilePicker({ multiple: true });
    files = await Promise.all(
      picked.map(async h => {
        const file = await h.getFile();
        handles.add(file, h);
        return file;
      })
    );
  } catch (err) {
    if ((err as Error)?.name === 'AbortError') {
      return; // the user closed the picker
    }
    // Not allowed here (e.g. a cross-origin frame): a plain file input, without handles.
    console.info('jupyter-tus: file picker unavailable, using a file input', err);
    files = await pickFiles(true);
  }
  const uploads = files.map(file => browser.model.upload(file));
  try {
    await Promise.all(uploads);
  } catch (err) {
    void showErrorMessage('Upload Error', err as Error);
  }
}

/** Ask the user to pick the file of an interrupted upload again. */
async function pickFile(name: string): Promise<File | null> {
  const files = await pickFiles(false, `Pick ${name} again`);
  return files[0] ?? null;
}

/** Files picked through a plain `<input type=file>` (a folder's, with `folder`). */
function pickFiles(multiple: boolean, title = '', folder = false): Promise<File[]> {
  return new Promise(resolve => {
    const input = document.createElement('input');
    input.type = 'file';
    input.multiple = multiple;
    if (folder) {
      input.webkitdirectory = true;
    }
    input.className = 'jp-TusUploads-picker';
    input.title = title;
    input.style.display = 'none';
    input.onchange = () => {
      resolve(Array.from(input.files ?? []));
      input.remove();
    };
    input.addEventListener('cancel', () => {
      resolve([]);
      input.remove();
    });
    document.body.appendChild(input);
    input.click();
  });
}

/** Continue an upload the server lists but this page did not start (`TusUploader.adopt`). */
async function adopt(uploader: TusUploader, upload: IServerUpload, file: File): Promise<void> {
  void uploader.adopt(upload.url, upload.size, file, folderOf(upload)).catch(err => {
    void showErrorMessage('Upload Error', err as Error);
  });
}

/** Show `path` in the file browser: its folder, the file selected. */
async function revealInBrowser(
  app: JupyterFrontEnd,
  browser: FileBrowser | null,
  path: string
): Promise<void> {
  await app.commands.execute('filebrowser:go-to-path', { path });
  if (browser) {
    await browser.selectItemByName(PathExt.basename(path)).catch(() => undefined);
  }
}

/** A folder picked with `<input type=file webkitdirectory>`: each file into its own
 * folder under the one the browser shows (the server creates missing folders). */
async function uploadFolder(browser: FileBrowser): Promise<void> {
  const files = await pickFiles(true, 'Upload a folder', true);
  if (!files.length) {
    return;
  }
  const base = browser.model.path;
  const jobs = files.map(file => {
    const rel = (file as File & { webkitRelativePath?: string }).webkitRelativePath || '';
    const dir = rel.includes('/') ? rel.slice(0, rel.lastIndexOf('/')) : '';
    return () => browser.model.upload(file, dir ? PathExt.join(base, dir) : base);
  });
  // A few at a time, in the order of the folder.
  let next = 0;
  const failures: unknown[] = [];
  const worker = async () => {
    while (next < jobs.length) {
      const job = jobs[next++];
      try {
        await job();
      } catch (err) {
        failures.push(err);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(4, jobs.length) }, worker));
  if (failures.length) {
    void showErrorMessage('Upload Error', failures[0] as Error);
  }
}

export default plugin;
