"""The security headers every response carries (added by `hrem.serve.middleware.SecurityHeaders`, and by the
500 handler, which answers outside the middleware).

The page loads only its own files (no inline script or style, no CDN), so the policy can forbid everything
else; JSON and images get the same headers, which costs nothing and covers a response opened directly.
`img-src` also allows `blob:` so the page can preview a query image the visitor picked (an object URL of
their own file; a blob: URL can only be made by script the policy already allows).
"""
from __future__ import annotations

CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; "
                           "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}
