import io

from ovapipe.progress import Progress, human_bytes


def test_plain_lines_when_not_a_terminal():
    out = io.StringIO()
    with Progress("upload disk-0", 4 << 20, out, tty=False, line_every=0) as progress:
        progress.advance(1 << 20)
        progress.advance(3 << 20)
    text = out.getvalue()
    assert "\r" not in text and "\x1b" not in text
    assert text.splitlines()[-1].startswith("upload disk-0: 4.0 MiB / 4.0 MiB (100%)")


def test_bar_redraws_in_place_on_a_terminal():
    out = io.StringIO()
    with Progress("export", 100, out, tty=True) as progress:
        progress.advance(50)
        half = out.getvalue()
        progress.advance(50)
    text = out.getvalue()
    assert half.startswith("\r\x1b[K") and "[############............]" in half
    assert "[########################] 100 B / 100 B (100%)" in text
    assert text.endswith("\n")
    assert text.endswith("\n")


def test_human_bytes():
    assert human_bytes(512) == "512 B"
    assert human_bytes(1536) == "1.5 KiB"
    assert human_bytes(3 << 30) == "3.0 GiB"
