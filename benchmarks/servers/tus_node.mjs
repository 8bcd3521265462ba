// @tus/server + @tus/file-store on Node: node tus_node.mjs PORT DIR
// tus endpoint /files, GET /status
import http from "node:http";
import { Server } from "@tus/server";
import { FileStore } from "@tus/file-store";

const [port, directory] = process.argv.slice(2);
const tus = new Server({ path: "/files", datastore: new FileStore({ directory }) });
http
  .createServer((req, res) => {
    if (req.url === "/status") {
      res.writeHead(200, { "Content-Type": "application/json" });
      res.end('{"ok":true}');
      return;
    }
    tus.handle(req, res);
  })
  .listen(Number(port), "127.0.0.1");
