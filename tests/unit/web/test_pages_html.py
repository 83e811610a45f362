"""The pages' stylesheet and wording helpers, without a server: colour contrast in both palettes, waits in words."""

from __future__ import annotations

import re

import pytest

from mfa_gateway.web import html

DARK = "@media (prefers-color-scheme: dark)"
TEXT_PAIRS = [
    ("text", "bg"),  # body text, input text
    ("muted", "bg"),  # hints
    ("accent", "bg"),  # links, the secondary button's label
    ("error", "bg"),  # error messages
    ("on-accent", "accent"),  # the primary button's label
    ("text", "notice-bg"),  # the backup-codes notice
]
"""Every foreground/background pair the stylesheet paints text with."""


def palette(css: str) -> dict[str, str]:
    return dict(re.findall(r"--([a-z-]+):\s*(#[0-9a-fA-F]{6})", css))


def palettes() -> dict[str, dict[str, str]]:
    light, _, dark = html.STYLESHEET.partition(DARK)
    assert dark, f"the stylesheet has no {DARK} palette"
    return {"light": palette(light), "dark": palette(dark)}


def luminance(colour: str) -> float:
    """WCAG 2.x relative luminance of an ``#rrggbb`` colour."""
    channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(foreground: str, background: str) -> float:
    lighter, darker = sorted((luminance(foreground), luminance(background)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def test_contrast_formula_matches_the_wcag_reference_values() -> None:
    """The ratio computed here is WCAG's: black on white is 21:1, #767676 on white just passes 4.5:1."""
    assert contrast("#000000", "#ffffff") == pytest.approx(21.0)
    assert contrast("#767676", "#ffffff") == pytest.approx(4.54, abs=0.01)


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize(("foreground", "background"), TEXT_PAIRS)
def test_text_contrast_is_at_least_4_5_in_both_colour_schemes(scheme: str, foreground: str, background: str) -> None:
    """Each text colour on the background it is painted on reaches 4.5:1 (WCAG 1.4.3 AA), light and dark."""
    colours = palettes()[scheme]
    ratio = contrast(colours[foreground], colours[background])
    assert ratio >= 4.5, f"{scheme}: --{foreground} on --{background} is {ratio:.2f}:1, below 4.5:1"


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_input_borders_contrast_at_least_3(scheme: str) -> None:
    """An input's border, the only thing that shows where to type, reaches 3:1 (WCAG 1.4.11), light and dark."""
    colours = palettes()[scheme]
    assert contrast(colours["border"], colours["bg"]) >= 3.0


def test_both_palettes_define_the_same_colours_and_rules_use_only_them() -> None:
    """The dark palette overrides every light colour, and no rule paints text with a colour outside the palettes
    (a stray literal would escape the contrast check)."""
    schemes = palettes()
    assert set(schemes["light"]) == set(schemes["dark"])
    for declaration in re.findall(r"(?<![-\w])color:\s*([^;]+);", html.STYLESHEET):
        assert declaration.startswith("var(--"), f"a text colour outside the palettes: color: {declaration}"


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (1, "Try again in 1 second."),
        (0.2, "Try again in 1 second."),
        (45, "Try again in 45 seconds."),
        (60, "Try again in 1 minute."),
        (61, "Try again in 2 minutes."),
        (120, "Try again in 2 minutes."),
        (3600, "Try again in 1 hour."),
        (3900, "Try again in 1 hour 5 minutes."),
        (7200, "Try again in 2 hours."),
    ],
)
def test_wait_in_words_rounds_up(seconds: float, words: str) -> None:
    """A Retry-After is said in words, rounded up so the page never promises a shorter wait than the real one."""
    assert html.wait_in_words(seconds) == words


def test_an_error_message_page_is_an_alert_with_a_way_back() -> None:
    """A message page for an error announces its message (role=alert), and offers links on; a confirmation is no
    alert."""
    refused = html.message_page("/_mfa", (), 429, "Too many failed attempts", "Too many.", wait=120)
    body = refused.text or ""
    assert '<p id="message" class="error" role="alert">Too many. Try again in 2 minutes.</p>' in body
    assert '<a href="/">Back to the application</a>' in body
    done = html.message_page("/_mfa", (), 200, "Signed out", "Bye.", links=[("/x", "Sign in again")])
    assert "role=" not in (done.text or "") and '<a href="/x">Sign in again</a>' in (done.text or "")


@pytest.mark.parametrize(
    ("seconds", "words"),
    [(30 * 86400, "30 days"), (86400, "1 day"), (36 * 3600, "1 day"), (12 * 3600, "12 hours"), (90, "1 minute")],
)
def test_a_duration_is_told_in_its_largest_unit_rounded_down(seconds: float, words: str) -> None:
    """ "Remember this device for N days" never promises more than the rule's age."""
    assert html.duration(seconds) == words


def test_the_remember_checkbox_is_labelled_escaped_and_unticked() -> None:
    """The box is labelled (for a screen reader and a click on the words), escaped, and off unless the user ticks it."""
    box = html.checkbox("remember", "Remember <this> device")
    assert 'id="remember"' in box and 'for="remember"' in box and 'value="1"' in box
    assert "checked" not in box and "&lt;this&gt;" in box
