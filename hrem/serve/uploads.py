"""A query image sent to the server: the raw request body, refused early and by name when it is not one.

`POST /api/search?k=` takes the image's bytes as the whole body (what `fetch(url, {body: file})` and
`curl --data-binary @img.png` send); multipart forms are not parsed (no multipart parser to feed, and a
form is refused with a hint). The checks run cheapest first:

1. size: a Content-Length above `max_upload_bytes` is refused before any byte is read, and the body is
   read in chunks and dropped as soon as it passes the cap (413);
2. type: the first bytes must be a PNG, JPEG or WebP signature -- the Content-Type header and any file
   name are ignored (415);
3. pixels: the header's width x height must fit `max_upload_pixels` before anything is decoded (413);
4. decode: only the sniffed format's decoder may run; truncated or corrupt data is refused (422).

Steps 3 and 4 (`decode_upload`) run on the bounded model pool: decoding is the costly part.
"""
from __future__ import annotations

from fastapi import Request
from PIL import Image

from hrem.serve.errors import ApiError
from hrem.utils.images import ImageTooLarge, ImageUnreadable, decode_image_bytes

SIGNATURES = {"PNG": (b"\x89PNG\r\n\x1a\n",), "JPEG": (b"\xff\xd8\xff",)}
ACCEPTED = "PNG, JPEG or WebP"


def sniff_format(data: bytes) -> str | None:
    """"PNG", "JPEG" or "WEBP" from the file signature, None for anything else."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    for name, signatures in SIGNATURES.items():
        if data.startswith(signatures):
            return name
    return None


async def read_upload(request: Request, max_bytes: int) -> bytes:
    """The request body, at most `max_bytes` (413 beyond, 422 when empty, 415 for a multipart form)."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/"):
        raise ApiError(415, f"body: expected the image bytes as the request body ({ACCEPTED}), found a "
                            f"multipart form; send the file itself, e.g. curl --data-binary @image.png")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise ApiError(413, f"body: expected an image of at most {max_bytes:,} bytes, found {int(declared):,}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise ApiError(413, f"body: expected an image of at most {max_bytes:,} bytes, found more")
        chunks.append(chunk)
    if size == 0:
        raise ApiError(422, f"body: expected the bytes of a query image ({ACCEPTED}), found an empty body")
    return b"".join(chunks)


def check_format(data: bytes) -> str:
    found = sniff_format(data)
    if found is None:
        head = data[:8].hex(" ")
        raise ApiError(415, f"body: expected a {ACCEPTED} image (checked from its first bytes), found bytes "
                            f"starting {head}")
    return found


def decode_upload(data: bytes, image_format: str, max_pixels: int) -> Image.Image:
    """RGB pixels of an upload whose signature said `image_format`; 413 over the pixel budget, 422 if corrupt."""
    where = f"uploaded {image_format} image"
    try:
        return decode_image_bytes(data, where, max_pixels=max_pixels, formats=(image_format,))
    except ImageTooLarge as exc:
        # the budget is the server's upload limit here, not the $HREM_MAX_IMAGE_PIXELS the message suggests
        raise ApiError(413, str(exc).split(" (set $")[0] + " for query images") from None
    except ImageUnreadable as exc:
        raise ApiError(422, str(exc)) from None


__all__ = ["check_format", "decode_upload", "read_upload", "sniff_format"]
