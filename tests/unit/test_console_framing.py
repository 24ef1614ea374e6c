"""Console framing on the exact bytes of a real Asterisk 22.7 console, split every way."""

from __future__ import annotations

import ast
import itertools
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callgate.pbx import commands
from callgate.pbx import console_framing as framing
from callgate.simulator.console import ConsoleScreen
from tests.support.transcripts import read

TOKEN = "cgsync0123456789ab"  # the sentinel the capture used
PROMPT = b"vm*CLI> "
SENTINEL_ANSWER = (
    f"No such command '{TOKEN}' (type 'core show help {TOKEN}' for other possible commands)\n"
)
ORIGINATE = "channel originate Local/199@inoffice application Dial Local/+375296254070@inoffice"
# What `asterisk -rx` prints for each command of the capture, at the same moment.
RX = {
    "core set verbose 0": "Console verbose is still OFF.\n",
    ORIGINATE: "",
    "core show channels concise": (
        "Local/199@inoffice-000000a1;2!inoffice!199!3!Ring!Wait!45!!!!3!0!!1795708900.334\n"
        "Local/199@inoffice-000000a1;1!inoffice!199!1!Ringing!AppDial2!(Outgoing Line)"
        "!!!!3!0!!1795708900.333\n"
    ),
    "channel request hangup all": (
        "Requested Hangup on channel 'Local/199@inoffice-000000a1;2'\n"
        "Requested Hangup on channel 'Local/199@inoffice-000000a1;1'\n"
    ),
    "core show channels count": "0 active channels\n0 active calls\n161 calls processed\n",
}


def capture() -> list[tuple[str, bytes]]:
    """(what was sent, the bytes that came back) for each step of the recorded session."""
    text = read("remote-console-over-ssh-pty.txt")
    steps = re.findall(r"^### sent: '([^\n]*)'\n(.*?)\n(?=###|\Z)", text, re.M | re.S)
    return [(sent, ast.literal_eval(chunk).encode("latin-1")) for sent, chunk in steps]


def chunk(sent: str) -> bytes:
    return dict(capture())[sent]


def framed(command: str) -> bytes:
    """The command's capture bytes then the sentinel's, as one request would read them, with
    the prompt left over from the step before."""
    return PROMPT + chunk(command) + chunk(TOKEN)


def feed(raw: bytes, pieces: list[int], command: str) -> str:
    """Deliver ``raw`` cut at ``pieces``; the end must be found exactly when the sentinel's
    line is complete (not before, and without waiting for the redraw after it)."""
    line_end = raw.index(b"other possible commands)\r\n") + len(b"other possible commands)\r\n")
    finder, buffer = framing.AnswerEnd(TOKEN), bytearray()
    cuts = [0, *pieces, len(raw)]
    for start, stop in itertools.pairwise(cuts):
        buffer += raw[start:stop]
        end = finder.find(buffer)
        assert end == (line_end if len(buffer) >= line_end else None)
        if end is not None:
            return framing.parse_answer(bytes(buffer[:end]), command, TOKEN, PROMPT)
    raise AssertionError("the sentinel's line never ended")


def test_capture_is_the_reference() -> None:
    """The capture has the banner, the five commands, the sentinel and exit."""
    sent = [s for s, _ in capture()]
    assert sent == ["(connect)", *list(RX)[:3], TOKEN, *list(RX)[3:], "exit"]


def test_banner_gives_host_name_and_prompt() -> None:
    """The prompt is learnt from the banner; the bytes before it are the banner."""
    banner = chunk("(connect)")
    found = framing.read_banner(banner)
    assert found == framing.Banner("vm", PROMPT, len(banner) - len(PROMPT))
    assert all(framing.read_banner(banner[:cut]) is None for cut in range(len(banner)))


@pytest.mark.parametrize("command", list(RX))
def test_each_answer_equals_rx(command: str) -> None:
    """Echo, prompts, erase codes, \\r and the redraw go; the -rx bytes remain."""
    assert feed(framed(command), [], command) == RX[command]


def test_prompt_redraw_between_two_lines_of_one_answer() -> None:
    """The listing's two lines come in two batches with a prompt between: one answer."""
    raw = framed("core show channels concise")
    assert raw.count(framing.REFRESH + PROMPT + framing.CLEAR_LINE) == 1
    assert feed(raw, [], "core show channels concise").count("\n") == 2


@pytest.mark.parametrize("command", ["core show channels concise", "core set verbose 0"])
def test_split_at_every_byte_boundary(command: str) -> None:
    """Whatever the SSH packets, the end is found only at the end and the answer is the same."""
    raw = framed(command)
    for cut in range(1, len(raw)):
        assert feed(raw, [cut], command) == RX[command]
    assert feed(raw, list(range(1, len(raw))), command) == RX[command]  # byte by byte


def test_simulator_screen_writes_the_capture_bytes() -> None:
    """ConsoleScreen reproduces every recorded chunk byte for byte, banner to exit."""
    screen = ConsoleScreen("vm", 6968)
    answers = {**RX, TOKEN: SENTINEL_ANSWER}
    for sent, recorded in capture():
        if sent == "(connect)":
            written = screen.banner()
        else:
            written = "".join(screen.respond([sent], lambda c: (answers[c], 0)))
        assert written.encode("latin-1") == recorded, sent


@given(
    st.lists(
        st.text(alphabet="abc XYZ019!;@/-()'=", max_size=700).map(lambda s: s + "\n"),
        max_size=4,
    ).map("".join)
    | st.text(alphabet="ab \n", max_size=1200)
)
def test_any_answer_survives_the_simulated_console(text: str) -> None:
    """Long answers (cut in 511-byte blocks, no erase between) and odd line ends round-trip."""
    screen = ConsoleScreen("pbx-01.example", 1)
    command = commands.CHANNELS_CONCISE
    raw = "".join(
        [
            screen.echo([command, TOKEN]),
            screen.output(command, text),
            screen.output(TOKEN, SENTINEL_ANSWER),
        ]
    )
    data = b"pbx-01.example*CLI> " + raw.encode()
    end = framing.AnswerEnd(TOKEN).find(data)
    assert end is not None
    parsed = framing.parse_answer(data[:end], command, TOKEN, b"pbx-01.example*CLI> ")
    assert parsed == text


def test_log_lines_and_colours_are_not_the_answer() -> None:
    """Unsolicited log lines (before the echo or inside the answer) and CSI codes are dropped."""
    log = "[Nov 26 15:40:00] WARNING[6968][C-00000001]: chan_local.c:12 f: odd\r\n"
    before = framing.CLEAR_LINE + log.encode() + framing.REFRESH + PROMPT
    inside = chunk("channel request hangup all").replace(
        b"\r\nRequested", f"\r\n\x1b[1;31m{log}\x1b[0mRequested".encode(), 1
    )
    raw = before + PROMPT + inside + chunk(TOKEN)
    assert feed(raw, [], "channel request hangup all") == RX["channel request hangup all"]
    assert framing.clean(b"a [x] NOTICE[1]: not at a line start\r\n") == (
        "a [x] NOTICE[1]: not at a line start\n"
    )


def test_garbage_is_refused() -> None:
    """No echo, a sentinel answer outside the console's output, an endless banner: garbage."""
    no_echo = chunk(TOKEN).replace(TOKEN.encode() + b"\r\n", b"", 1)
    with pytest.raises(framing.ConsoleGarbage, match="did not echo"):
        framing.parse_answer(PROMPT + no_echo, "core show version", TOKEN, PROMPT)
    plain = f"core show version\r\n{SENTINEL_ANSWER}".encode()  # no batch structure at all
    with pytest.raises(framing.ConsoleGarbage, match="outside"):
        framing.parse_answer(plain, "core show version", TOKEN, PROMPT)
    with pytest.raises(framing.ConsoleGarbage, match="banner"):
        framing.read_banner(b"x" * (framing.MAX_BANNER + 1))


def test_what_may_be_typed_into_a_console() -> None:
    """Only one printable ASCII line that the console itself does not act on."""
    assert framing.console_safe(ORIGINATE)
    assert framing.console_safe(commands.hangup("Local/150@inoffice-00000000;1"))
    for unsafe in ("a\nb", "core show help ?", "a\tb", "!ls", "exit", "QUIT now", "ñ", "", " "):
        assert not framing.console_safe(unsafe), unsafe
    assert not framing.console_safe("x" * (framing.MAX_COMMAND + 1))
    assert framing.request("a b", TOKEN) == f"a b\n{TOKEN}\n".encode()
    assert re.fullmatch(r"cgsync[0-9a-f]{16}", framing.new_token())


def test_a_console_that_ended() -> None:
    """The last words say why a console ended."""
    buffer = b"vm*CLI> core show version\r\nvm*CLI> \r\nDisconnected from Asterisk server\r\n"
    assert framing.console_ended(buffer) == "Disconnected from Asterisk server"
    not_running = b"Unable to connect to remote asterisk (does /x/asterisk.ctl exist?)"
    assert framing.says_not_running(not_running) and not framing.says_not_running(buffer)


TOKEN_2 = "cgsyncfedcba9876543210"  # a second request's sentinel, as long as the first's
LISTING = commands.CHANNELS_CONCISE


def _echo_and_answer(sent: str) -> tuple[bytes, bytes]:
    """The capture's chunk for ``sent`` cut into its echo (line and prompt) and its answer."""
    data = (
        chunk(TOKEN).replace(TOKEN.encode(), TOKEN_2.encode()) if sent == TOKEN_2 else chunk(sent)
    )
    echo = sent.encode() + b"\r\n" + PROMPT
    assert data.startswith(echo)
    return echo, data[len(echo) :]


def _typed_ahead_layouts() -> dict[str, bytes]:
    """An originate and its listing typed at once, as a console may show them."""
    parts = [_echo_and_answer(sent) for sent in (ORIGINATE, TOKEN, LISTING, TOKEN_2)]
    echoes = b"".join(echo for echo, _ in parts)
    answers = b"".join(answer for _, answer in parts)
    sentinel_end = b"other possible commands)\r\n"
    # The first sentinel's line and the listing's first line read from Asterisk as one block.
    between = sentinel_end + framing.REFRESH + PROMPT + framing.CLEAR_LINE
    one_block = answers.replace(between, sentinel_end, 1)
    assert one_block != answers
    return {
        "every echo first": PROMPT + echoes + answers,
        "each echo after the answer before it": PROMPT + b"".join(e + a for e, a in parts),
        "one block across two answers": PROMPT + echoes + one_block,
    }


@pytest.mark.parametrize("layout", list(_typed_ahead_layouts()))
def test_typed_ahead_answers_in_every_order(layout: str) -> None:
    """Two requests typed at once: each answer is its own, wherever the echoes fall."""
    raw = _typed_ahead_layouts()[layout]
    requests = [(ORIGINATE, TOKEN), (LISTING, TOKEN_2)]
    end = framing.AnswerEnd(TOKEN_2).find(raw)
    assert end is not None and raw[end:] in (b"", framing.REFRESH + PROMPT)
    for cut in range(end):  # found only once the second sentinel's line is whole
        assert framing.AnswerEnd(TOKEN_2).find(raw[:cut]) is None
    assert framing.parse_answers(raw[:end], requests, PROMPT) == [RX[ORIGINATE], RX[LISTING]]
    assert framing.answers_done(raw, [TOKEN, TOKEN_2]) == 2


def test_typed_ahead_half_done() -> None:
    """Counting what a console did before it ended: sentinel answers, in order."""
    (echo_1, answer_1), (echo_t, answer_t) = _echo_and_answer(ORIGINATE), _echo_and_answer(TOKEN)
    raw = PROMPT + echo_1 + echo_t + answer_1 + answer_t
    assert framing.answers_done(raw, [TOKEN, TOKEN_2]) == 1
    assert framing.answers_done(raw, [TOKEN_2, TOKEN]) == 0  # in order, or not at all
    end = framing.AnswerEnd(TOKEN).find(raw)
    assert end is not None
    assert framing.parse_answers(raw[:end], [(ORIGINATE, TOKEN)], PROMPT) == [""]
    with pytest.raises(framing.ConsoleGarbage, match="did not echo"):  # the listing: never read
        framing.parse_answers(raw, [(ORIGINATE, TOKEN), (LISTING, TOKEN_2)], PROMPT)
    assert framing.requests([ORIGINATE, LISTING], [TOKEN, TOKEN_2]) == (
        f"{ORIGINATE}\n{TOKEN}\n{LISTING}\n{TOKEN_2}\n".encode()
    )


def verbose_capture_chunks(at: str) -> bytes:
    """The chunks a real console wrote at one instant of console-verbose-outcomes.repr.txt."""
    text = read("console-verbose-outcomes.repr.txt")
    found = re.findall(rf"^ +{re.escape(at)} (b.*)$", text, re.M)
    return b"".join(ast.literal_eval(chunk) for chunk in found)


def test_a_notice_inside_an_answer_is_taken_out_and_kept() -> None:
    """The wrong context's exchange, byte for byte: the listing batch ends with core_local.c's
    NOTICE (colours and all); the answer is the listing as -rx prints it, the notice is kept
    apart for whoever asked for it."""
    originate = (
        "channel originate Local/150@nosuchcontext application Dial "
        "Local/+375296254070@nosuchcontext"
    )
    listing = "core show channels concise"
    recorded = verbose_capture_chunks("1.516")
    batch = recorded[recorded.index(b"\r\x1b[0K") :]  # after the echoes: the listing's batch
    first, second = "cgsync00000000000001", "cgsync00000000000002"

    def echo(line: str) -> bytes:
        return line.encode() + b"\r\n" + PROMPT

    def sentinel(token: str) -> bytes:
        line = (
            f"No such command '{token}' (type 'core show help {token}' for other possible commands)"
        )
        return b"\r\x1b[0K" + line.encode() + b"\r\n\r\r\n" + PROMPT

    raw = (
        PROMPT
        + echo(originate)
        + echo(first)
        + echo(listing)
        + echo(second)
        + sentinel(first)
        + batch
        + sentinel(second)
    )
    logs: list[str] = []
    answers = framing.parse_answers(raw, [(originate, first), (listing, second)], PROMPT, logs)
    assert answers == [
        "",
        "Local/150@nosuchcontext-0000005f;1!nosuchcontext!150!1!Down!AppDial2!(Outgoing Line)"
        "!!!!3!0!!1796565377.204\n"
        "Local/150@nosuchcontext-0000005f;2!nosuchcontext!150!1!Ring!(None)!!!!!3!0!!"
        "1796565377.205\n",
    ]
    assert logs == [
        "[Dec  6 13:56:17] NOTICE[16379]: core_local.c:753 local_call: No such "
        "extension/context 150@nosuchcontext while calling Local channel"
    ]
