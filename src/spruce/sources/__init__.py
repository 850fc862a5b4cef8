"""Connectors: move data between spruce archives and indexes served elsewhere.

``spruce.sources.pinecone`` exports any index behind the Pinecone API (Pinecone itself,
or another ``spruce serve``) into a spruce archive, and restores an archive into one,
through the official ``pinecone`` SDK (7.3, 9.x and 10.x).
"""

from spruce.sources import copy, pinecone  # register the "copy"/"copy-in" and "remote-*" job kinds

__all__ = ["copy", "pinecone"]
