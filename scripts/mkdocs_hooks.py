"""MkDocs hooks: the pages under docs/ link to files elsewhere in the repository (the reproduction
report results/README.md, study files, cluster.yaml) with relative links that work on the forge.
MkDocs only knows docs/, so here those files join the site at their repository paths and the
links are rewritten to reach them there. A link to a repository file that does not exist is left
as it is, so that `mkdocs build --strict` fails on it like on any other dead link.

Listed in mkdocs.yml under `hooks:`.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path

from mkdocs.structure.files import File, Files, InclusionLevel

ROOT = Path(__file__).resolve().parents[1]
# Whole trees that belong to the site: the reproduction report and the study folders it links.
TREES = ("results",)
TREE_SUFFIXES = {".md", ".png"}
# Pages that the nav in mkdocs.yml lists; the other repository pages are reached by links only.
IN_NAV = {"results/README.md"}
LINK = re.compile(r"(\]\()([^)\s#]+)((?:#[^)\s]*)?\))")


def _repo_path(page_uri: str, target: str, docs_prefix: str) -> str | None:
    """The repository path a relative link on a page points to, when it leaves docs/."""
    if "://" in target or target.startswith(("/", "mailto:")):
        return None
    source = posixpath.join(docs_prefix, page_uri) if docs_prefix else page_uri
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(source), target))
    if joined.startswith("../"):
        return None
    return joined


def _docs_prefix(config) -> str:
    return Path(config["docs_dir"]).resolve().relative_to(ROOT).as_posix()


def _outside_links(text: str, page_uri: str, docs_prefix: str, in_docs: bool):
    for match in LINK.finditer(text):
        path = _repo_path(page_uri, match.group(2), docs_prefix if in_docs else "")
        if path is not None and not path.startswith(docs_prefix + "/"):
            yield match, path


def on_files(files: Files, config) -> Files:
    site = config["site_dir"]
    urls = config["use_directory_urls"]
    prefix = _docs_prefix(config)
    wanted: set[str] = set()
    for tree in TREES:
        wanted |= {p.relative_to(ROOT).as_posix() for p in (ROOT / tree).rglob("*")
                   if p.is_file() and p.suffix in TREE_SUFFIXES}
    docs_pages = [f for f in files if f.src_uri.endswith(".md")]
    extra_pages = [ROOT / p for p in wanted if p.endswith(".md")]
    for file in docs_pages:
        text = Path(file.abs_src_path).read_text(encoding="utf-8")
        wanted |= {path for _, path in _outside_links(text, file.src_uri, prefix, True) if (ROOT / path).is_file()}
    for page in extra_pages:
        text = page.read_text(encoding="utf-8")
        uri = page.relative_to(ROOT).as_posix()
        wanted |= {path for _, path in _outside_links(text, uri, prefix, False)
                   if not path.startswith(prefix + "/") and (ROOT / path).is_file()}
    for path in sorted(wanted):
        if files.get_file_from_path(path) is None:
            level = InclusionLevel.UNDEFINED if path in IN_NAV else InclusionLevel.NOT_IN_NAV
            files.append(File(path, str(ROOT), site, urls, inclusion=level))
    return files


def on_page_markdown(markdown: str, page, config, files: Files) -> str:
    prefix = _docs_prefix(config)
    uri = page.file.src_uri
    in_docs = Path(page.file.abs_src_path).resolve().is_relative_to((ROOT / prefix).resolve())

    def rewrite(match: re.Match) -> str:
        path = _repo_path(uri, match.group(2), prefix if in_docs else "")
        if path is None:
            return match.group(0)
        if path.startswith(prefix + "/"):
            site_path = path[len(prefix) + 1:]
        elif files.get_file_from_path(path) is not None:
            site_path = path
        else:
            return match.group(0)  # a dead link: left for --strict to report
        relative = posixpath.relpath(site_path, posixpath.dirname(uri) or ".")
        return f"{match.group(1)}{relative}{match.group(3)}"

    return LINK.sub(rewrite, markdown)
