"""
A small JSON API for notes, in plain code with the standard library.

    GET    /lambda/notes        all notes
    POST   /lambda/notes        {"text": "..."} adds one (201)
    GET    /lambda/notes/ID     one note
    DELETE /lambda/notes/ID     removes one (204)

Notes are kept in SQLite, so every warm worker of the function sees the
same notes.  The database is ``NOTES_DB`` if set, else a file in a private
directory under the system temp directory.
"""

import json
import os
import sqlite3
import tempfile
import time


def _database():
    path = os.environ.get("NOTES_DB")
    if not path:
        directory = os.path.join(tempfile.gettempdir(), f"lambdagw-notes-{os.getuid()}")
        os.makedirs(directory, mode=0o700, exist_ok=True)
        st = os.lstat(directory)
        if st.st_uid != os.getuid() or st.st_mode & 0o077:
            raise RuntimeError(f"{directory} is not a private directory")
        path = os.path.join(directory, "notes.sqlite3")
    db = sqlite3.connect(path, timeout=5, isolation_level=None)
    db.execute("CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, text TEXT, created REAL)")
    return db


DB = _database()  # opened once per worker, reused while it is warm


def reply(status, document=None):
    headers = {"content-type": ["application/json"]}
    body = "" if document is None else json.dumps(document) + "\n"
    return {"type": "HTTPJSON-REP", "meta": {"status": status, "headers": headers}, "body": body}


def note(row):
    return {"id": row[0], "text": row[1], "created": row[2]}


def handler(event, context):
    meta = event.get("meta", {})
    method = meta.get("method", "GET")
    segments = [s for s in meta.get("path", "/").split("/") if s]
    if context.function_name in segments:  # the path may still hold the prefix and name
        segments = segments[len(segments) - segments[::-1].index(context.function_name) :]

    if not segments:
        if method == "GET":
            rows = DB.execute("SELECT id, text, created FROM notes ORDER BY id").fetchall()
            return reply(200, {"notes": [note(row) for row in rows]})
        if method == "POST":
            try:
                text = json.loads(event.get("body") or "null")["text"]
            except (ValueError, TypeError, KeyError):
                return reply(400, {"error": 'send a JSON object like {"text": "..."}'})
            if not isinstance(text, str):
                return reply(400, {"error": "text must be a string"})
            now = time.time()
            cursor = DB.execute("INSERT INTO notes (text, created) VALUES (?, ?)", (text, now))
            return reply(201, note((cursor.lastrowid, text, now)))
        return reply(405, {"error": f"{method} not allowed here"})

    if len(segments) != 1 or not segments[0].isdigit():
        return reply(404, {"error": "no such note"})
    note_id = int(segments[0])
    if method == "GET":
        row = DB.execute("SELECT id, text, created FROM notes WHERE id = ?", (note_id,)).fetchone()
        return reply(200, note(row)) if row else reply(404, {"error": "no such note"})
    if method == "DELETE":
        deleted = DB.execute("DELETE FROM notes WHERE id = ?", (note_id,)).rowcount
        return reply(204) if deleted else reply(404, {"error": "no such note"})
    return reply(405, {"error": f"{method} not allowed here"})
