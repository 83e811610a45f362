"""QR codes for enrollment, as a PNG data URL (the seed's contract) and as inline-safe SVG.

qrcode (and, for the PNG, its image backend) is imported when a code is drawn, not when the gateway starts: most
requests never draw one, and a gateway that never enrolls anyone should not carry it in memory.
"""

from __future__ import annotations

import base64
import io
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import qrcode


def _qr(data: str) -> qrcode.QRCode:
    import qrcode.constants  # on first use: see the module docstring

    qr = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, box_size=8, border=4)
    qr.add_data(data)
    qr.make(fit=True)
    return qr


def png_data_url(data: str) -> str:
    buffer = io.BytesIO()
    _qr(data).make_image().save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def svg(data: str) -> str:
    import qrcode.image.svg  # on first use: see the module docstring

    buffer = io.BytesIO()
    _qr(data).make_image(image_factory=qrcode.image.svg.SvgPathImage).save(buffer)
    return buffer.getvalue().decode("utf-8")
