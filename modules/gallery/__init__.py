"""The gallery: an SQLite index of the saved pictures (`modules.gallery.index`) behind the Gallery tab."""

from modules.gallery.index import GalleryEntry, GalleryIndex, GalleryPage, GalleryQuery

__all__ = ["GalleryEntry", "GalleryIndex", "GalleryPage", "GalleryQuery"]
