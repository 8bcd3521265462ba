"""tuspyserver (FastAPI) under uvicorn + uvloop, as its README runs it.

python tuspy_server.py PORT DIR     -> tus endpoint /files, GET /status
"""

import sys

import uvicorn
from fastapi import FastAPI
from tuspyserver import create_tus_router

port, directory = int(sys.argv[1]), sys.argv[2]
app = FastAPI()
app.include_router(create_tus_router(prefix="files", files_dir=directory, max_size=1 << 40))


@app.get("/status")
def status():
    return {"ok": True}


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=port, loop="uvloop", log_level="warning")
