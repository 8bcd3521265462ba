/**
 * jupyter-tus: the file browser's upload (toolbar button and drag-and-drop, both of
 * which call `FileBrowserModel.upload()`) goes through tus to `{base_url}api/tus/uploads`.
 */
import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { Dialog, showDialog, showErrorMessage } from '@jupyterlab/apputils';
import { PageConfig, URLExt } from '@jupyterlab/coreutils';
import {
  FileBrowser,
  FileBrowserModel,
  IDefaultFileBrowser,
  IFileBrowserFactory
} from '@jupyterlab/filebrowser';
import { Contents, ServerConnection } from '@jupyterlab/services';
import { ISettingRegistry } from '@jupyterlab/settingregistry';

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
import { TusUploader, UploadItem, probeEndpoint } from './uploader';

const PLUGIN_ID = 'jupyter-tus:plugin';

interface IExtraSettings {
  keepFileHandles: boolean;
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'Resumable tus uploads from the file browser.',
  autoStart: true,
  requires: [IFileBrowserFactory],
  optional: [IDefaultFileBrowser, ISettingRegistry],
  activate: (
    app: JupyterFrontEnd,
    factory: IFileBrowserFactory,
    defaultBrowser: IDefaultFileBrowser | null,
    registry: ISettingRegistry | null
  ) => {
    void setUp(app, factory, defaultBrowser, registry);
  }
};

async function setUp(
  app: JupyterFrontEnd,
  factory: IFileBrowserFactory,
  defaultBrowser: FileBrowser | null,
  registry: ISettingRegistry | null
): Promise<void> {
  const serverSettings = ServerConnection.makeSettings();
  const endpoint = URLExt.join(PageConfig.getBaseUrl(), 'api/tus/uploads');
  const headers = () => authHeaders(document.cookie, serverSettings.token);

  let settings: IUploadSettings = { ...DEFAULT_SETTINGS };
  const extra: IExtraSettings = { keepFileHandles: true };
  if (registry) {
    try {
      const loaded = await registry.load(PLUGIN_ID);
      const apply = () => {
        const c = loaded.composite as any;
        settings = normalizeSettings(c);
        extra.keepFileHandles = c.keepFileHandles !== false;
      };
      apply();
      loaded.changed.connect(apply);
    } catch (err) {
      console.warn('jupyter-tus: settings not loaded, using defaults', err);
    }
  }

  // Without the server extension, leave the stock upload alone.
  const missing = await checkServer(endpoint, headers());
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
    // Listing the folder (as the stock upload does) rather than probing the file
    // keeps a 404 out of the console for every new file.
    exists: async path => {
      const slash = path.lastIndexOf('/');
      const folder = slash < 0 ? '' : path.slice(0, slash);
      const name = path.slice(slash + 1);
      try {
        const listing = await contents.get(folder, { content: true });
        return (listing.content as Contents.IModel[]).some(i => i.name === name);
      } catch {
        return false;
      }
    },
    confirmOverwrite: async (name, folder) => {
      const result = await showDialog({
        title: 'Overwrite file?',
        body: `"${name}" already exists in /${folder}. Overwrite it?`,
        buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Overwrite' })]
      });
      return result.button.accept;
    },
    landed: item => {
      for (const b of browsers) {
        if (!b.isDisposed && normalizeFolder(b.model.path) === item.folder) {
          void b.model.refresh();
        }
      }
    }
  });

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
          if (!extra.keepFileHandles || !picker || !target.closest('.jp-id-upload')) {
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

  if (defaultBrowser) {
    patch(defaultBrowser);
    const panel = new UploadPanel(uploader, pickFile);
    defaultBrowser.addWidget(panel);
  }
  factory.tracker.forEach(patch);
  factory.tracker.widgetAdded.connect((_, b) => patch(b));

  await uploader.restore();
  const interrupted = uploader.items.filter(i => i.state === 'interrupted').length;
  if (interrupted) {
    console.info(`jupyter-tus: ${interrupted} unfinished upload(s) can be resumed`);
  }
  console.info(`jupyter-tus: file browser uploads go through tus to ${endpoint}`);
  document.body.dataset.jupyterTus = 'ready';
}

/** Why the tus endpoint cannot be used, or '' when it answers like a tus server. */
async function checkServer(endpoint: string, headers: Record<string, string>): Promise<string> {
  const check = await probeEndpoint(endpoint, headers);
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
    try {
      return await contents.get(joinPath(folder, file.name), { content: false });
    } catch {
      return undefined as unknown as Contents.IModel;
    }
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
async function pickFile(item: UploadItem): Promise<File | null> {
  const files = await pickFiles(false, `Pick ${item.name} again`);
  return files[0] ?? null;
}

/** Files picked through a plain `<input type=file>`. */
function pickFiles(multiple: boolean, title = ''): Promise<File[]> {
  return new Promise(resolve => {
    const input = document.createElement('input');
    input.type = 'file';
    input.multiple = multiple;
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

export default plugin;
