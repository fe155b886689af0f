"""Helpers shared by the subcommands: the cache argument, checked before anything reads it."""

from __future__ import annotations

import os

CACHE_HELP = "cache root (default: $NPC_FRAMES_CACHE or ./npc_frames_cache)"


def existing_cache(cache: str | os.PathLike[str] | None) -> str:
    """Return the cache root of `cache` after checking that it is an existing folder.

    Raises CacheError naming the path when it does not exist or is a file: a query over a cache
    that is not there must fail, not return 0 rows.
    """
    from npc_frames import storage
    from npc_frames.cache import cache_root
    from npc_frames.errors import CacheError

    root = cache_root(cache)
    if storage.is_remote(root):
        if not storage.exists(root):
            raise CacheError(
                "the cache does not exist", path=root, expected="a cache written by convert"
            )
        return root
    if not os.path.exists(root):
        raise CacheError(
            "the cache folder does not exist",
            path=root,
            expected="a cache folder written by `npc-frames convert` (or pass --cache)",
        )
    if not os.path.isdir(root):
        raise CacheError(
            "the cache path is a file, not a folder",
            path=root,
            expected="a cache folder written by `npc-frames convert`",
        )
    return root
