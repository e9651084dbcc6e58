"""On PYTHONPATH, makes this Python look like the GPU machine's image: the packages it lacks and
cannot install (no internet; Ray's wheel alone is over a call's 64 MiB) fail to import."""

import sys

ABSENT = {"captum", "lime", "dlib", "fastapi", "uvicorn", "multipart", "python_multipart", "ray"}


class Absent:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name.split(".")[0] in ABSENT:
            raise ModuleNotFoundError(f"No module named {name!r} (absent on the GPU machine)", name=name)
        return None


sys.meta_path.insert(0, Absent())
