"""What a failed job says: secrets masked in messages, traces and logs; the error_message hook."""

from __future__ import annotations

import gc
import logging
import os
import warnings
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from async_endpoints import (
    AsyncContext,
    AsyncEndpoints,
    ConfigurationError,
    InMemoryJobStore,
    JobStatus,
    JobStore,
    Settings,
)
from async_endpoints._error_describer import MAX_MESSAGE, MAX_TRACEBACK, ErrorDescriber
from async_endpoints._redact import redact

SECRET_KEY = "sk_live_4eC39HqLyjWDarjtT1zdp7dc"


# --- the default masking ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("postgresql://app:s3cret@db/x", "postgresql://app:***@db/x"),
        ("redis://:s3cret@cache:6379/0 refused", "redis://:***@cache:6379/0 refused"),
        ("amqp://app:p@ss:w0rd@mq/vhost", "amqp://app:***@mq/vhost"),
        ("clone https://ghp_abc123@github.com/o/r.git", "clone https://***@github.com/o/r.git"),
        ("could not reach app:s3cret@db:5432", "could not reach app:***@db:5432"),
        ("could not reach app:s3c:r@t@db:5432", "could not reach app:***@db:5432"),
    ],
    ids=["dsn", "empty-user", "at-sign-in-password", "token-as-user", "bare-userinfo", "bare-odd"],
)
def test_credentials_in_url_userinfo_are_masked_and_the_rest_kept(text: str, masked: str) -> None:
    """A URL's password (or lone token), and a bare user:token@host, read as ***."""
    assert redact(text) == masked


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        (
            "401 with headers {'Authorization': 'Bearer eyJhbGciOi.eyJzdWIi.c2ln'}",
            "401 with headers {'Authorization': '***'}",
        ),
        ("sent {'X-Api-Key': 'k-12345678'}", "sent {'X-Api-Key': '***'}"),
        ("sent {'Cookie': 'sid=s3cr3tvalue'}", "sent {'Cookie': '***'}"),
        ('{"Proxy-Authorization": "Basic dXNlcjpwYXNz"}', '{"Proxy-Authorization": "***"}'),
        ("had Authorization: Bearer eyJhbGciOi.x.y", "had Authorization: Bearer ***"),
        ("> Cookie: theme=dark; JSESSIONID=S3cr3tValue123", "> Cookie: ***"),
        (
            'Authorization: Digest username="app", response="6629fae49393a05397450978507c4ef1"',
            "Authorization: ***",
        ),
        (
            "Headers([('x-api-key', 'k-12345678'), ('accept', '*/*')])",
            "Headers([('x-api-key', '***'), ('accept', '*/*')])",
        ),
        (
            "[(b'cookie', b'sid=abc123'), (b'authorization', b'Token abcdef123')]",
            "[(b'cookie', b'***'), (b'authorization', b'***')]",
        ),
        (
            "ghp_16C7e42F292c6912E7710c838347Ae178B4a:x-oauth-basic@github.com/o/r.git",
            "***@github.com/o/r.git",
        ),
        ("[('authorization', 'Basic dXNlcjpwYXNz')]", "[('authorization', '***')]"),
        (
            "config:\n  password: hunter22\n  api_key: 'S3cr3t'\nuser: app",
            "config:\n  password: ***\n  api_key: '***'\nuser: app",
        ),
        (f"settings api_key = {SECRET_KEY} loaded", "settings api_key = *** loaded"),
        ("x-api-key: k-12345678; retry\nnext", "x-api-key: ***\nnext"),
        (
            "push https://ghp_16C7e42F292c6912E7710c838347Ae178B4a:x-oauth-basic@github.com/o/r",
            "push https://***@github.com/o/r",
        ),
    ],
    ids=[
        "header-mapping-bearer",
        "api-key-mapping",
        "cookie-mapping",
        "json-basic",
        "header-line",
        "curl-cookie-line",
        "digest",
        "headers-pairs",
        "raw-header-pairs",
        "bare-token-user",
        "headers-list-basic",
        "yaml-password",
        "spaced-equals",
        "header-line-x-api-key",
        "token-as-url-user",
    ],
)
def test_header_credentials_and_named_lines_are_masked(text: str, masked: str) -> None:
    """The sensitive headers' names mask like the sensitive parameters' (in a mapping, a
    header line), a credential after Bearer or Basic is masked wherever it stands, an
    unquoted ``name: value`` or spaced ``name = value`` of a sensitive name is masked, and
    a URL user name that is a token is masked with its placeholder password."""
    assert redact(text) == masked


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("X_API_KEY: k-12345678\nnext", "X_API_KEY: ***\nnext"),
        (
            "environ {'HTTP_AUTHORIZATION': 'Token abc123', 'HTTP_X_API_KEY': 'k-1234'}",
            "environ {'HTTP_AUTHORIZATION': '***', 'HTTP_X_API_KEY': '***'}",
        ),
        ("HTTP_COOKIE=sid=S3cr3tValue; theme=dark", "HTTP_COOKIE=***; theme=dark"),
        ("< Set-Cookie: sid=S3cr3tValue; Path=/; HttpOnly", "< Set-Cookie: ***"),
        ("{'set-cookie': 'sid=S3cr3tValue'}", "{'set-cookie': '***'}"),
        ("ran mysql --password s3cret --host db", "ran mysql --password *** --host db"),
        (
            "Command '['mysql', '--user', 'app', '--password', 's3cret']' returned 1",
            "Command '['mysql', '--user', 'app', '--password', '***']' returned 1",
        ),
        ("ran deploy --token 'ghp_x1y2z3' now", "ran deploy --token '***' now"),
        ('body {\\"password\\": \\"hunter22\\"}', 'body {\\"password\\": ***}'),
        (
            "Command 'mysql --user app --password s3cret' returned 1",
            "Command 'mysql --user app --password ***' returned 1",
        ),
        ('{"cmd": "mysql --password s3cret", "rc": 1}', '{"cmd": "mysql --password ***", "rc": 1}'),
        ("cmd='--password s3cret'", "cmd='--password ***'"),
    ],
    ids=[
        "underscored-header-line",
        "wsgi-environ",
        "wsgi-cookie-pair",
        "set-cookie-line",
        "set-cookie-mapping",
        "command-line-flag",
        "argv-list",
        "quoted-flag-value",
        "escaped-json",
        "shell-command-repr",
        "command-in-json",
        "flag-after-quote",
    ],
)
def test_other_spellings_of_sensitive_names_are_masked(text: str, masked: str) -> None:
    """A sensitive header written with underscores or as a WSGI environ key
    (``HTTP_X_API_KEY``), a response's ``Set-Cookie`` (the ``cookie`` name's), a command
    line's ``--password value`` (in a shell line or an argv list's repr) and a key of JSON
    escaped inside a string are masked like the names they spell."""
    assert redact(text) == masked


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ('body {"clientSecret": "s3cr3t-value"}', 'body {"clientSecret": "***"}'),
        ("kwargs {'refreshToken': 'rt-123456'}", "kwargs {'refreshToken': '***'}"),
        ("GET /cb?accessToken=at-123456&page=2", "GET /cb?accessToken=***&page=2"),
        ("ClientSecret: hunter22\nnext", "ClientSecret: ***\nnext"),
        ("ACCESS-TOKEN = at-123456 sent", "ACCESS-TOKEN = *** sent"),
        ("ran sync --apiKey k-123456 now", "ran sync --apiKey *** now"),
        ("retry after sessionId=abc123", "retry after sessionId=***"),
        ("password_reset failed: passWord='hunter22'", "password_reset failed: passWord='***'"),
    ],
    ids=[
        "json-camel-case",
        "repr-camel-case",
        "query-camel-case",
        "header-line-pascal-case",
        "spaced-equals-upper-hyphen",
        "flag-camel-case",
        "sessionid-camel-case",
        "mixed-case-password",
    ],
)
def test_sensitive_names_in_camel_case_or_any_separators_are_masked(text: str, masked: str) -> None:
    """A name is compared as the captured query string compares its parameters: case,
    ``-``, ``_`` and camel case not counted (``clientSecret`` is ``client_secret``), so the
    JSON a JavaScript client sends is masked as well as a Python mapping's repr."""
    assert redact(text) == masked


def test_a_name_that_only_contains_a_sensitive_name_is_left_alone() -> None:
    """Only whole names are compared: ``monkey``, ``keyboard`` and ``tokenizer`` hold a
    sensitive name but are not one."""
    text = "monkey=1 keyboard=qwerty {'tokenizer': 'bpe'} passwordless=true"
    assert redact(text) == text


@pytest.mark.parametrize(
    "text",
    [
        "missing key: user_id",
        "Basic authentication failed for app",
        "token: expired",
        "session = 3 attempts",
        "(1045, \"Access denied for user 'app'@'10.0.0.1' (using password: YES)\")",
        "Invalid secret: expected 32 bytes, got 16",
        "Cannot set header Authorization: value has invalid characters",
        '    password = os.environ["DB_PASSWORD"]',
        "    password = self.settings.password",
        "    if password == 'hunter2':",
        "def connect(host: str, password: str)",
        "Bearer token-based authentication failed",
        "WWW-Authenticate: Bearer realm=api",
        "set --password-file to a path",
        "HTTP_HOST: example.org",
        "Error: --password is required",
        "option --token requires an argument",
        "--password and --password-file are mutually exclusive",
        "  -p, --password PASSWORD   the database password",
        "  --token string   the API token",
        "login: -session closed",
        "{'set_key': 'routing-table', 'http_token': 'expired'}",
        "set_session=enabled",
        "    http_secret = None",
        "run ['kubectl', '--token', '--insecure-skip-tls-verify']",
        "clone https://app:s3cret@db/x".replace("s3cret", "***"),
    ],
)
def test_prose_with_a_sensitive_word_is_left_alone(text: str) -> None:
    """Words a message uses as words ("missing key: id", "Basic authentication") are not
    taken for credentials."""
    assert redact(text) == text


def test_sensitive_parameter_values_are_masked_by_percent_decoded_case_insensitive_name() -> None:
    """?KEY= and ?%74oken= are key and token: their values are masked, other values kept."""
    text = f"for url 'https://api.example/v1?page=2&KEY={SECRET_KEY}&%74oken=t0k#top'"
    assert redact(text) == "for url 'https://api.example/v1?page=2&KEY=***&%74oken=***#top'"


def test_sensitive_parameters_in_a_url_fragment_are_masked() -> None:
    """An OAuth implicit-flow redirect carries its token after ``#``: masked as in a query."""
    text = "redirect to https://app.example/cb#access_token=ya29.abc&token_type=bearer#top"
    masked = "redirect to https://app.example/cb#access_token=***&token_type=bearer#top"
    assert redact(text) == masked


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        (
            f"request failed: url=https://api.example.com/v1/charges?api_key={SECRET_KEY}",
            "request failed: url=https://api.example.com/v1/charges?api_key=***",
        ),
        (
            f"redirect blocked: next=/login?token={SECRET_KEY}",
            "redirect blocked: next=/login?token=***",
        ),
        (f"link=https://h/?key={SECRET_KEY}&sig=s2", "link=https://h/?key=***&sig=***"),
        (f"path=/p?a=1&token={SECRET_KEY};x=1", "path=/p?a=1&token=***;x=1"),
        ("url=https://h/?page=2 failed", "url=https://h/?page=2 failed"),
    ],
)
def test_a_url_given_as_a_pairs_value_has_its_query_masked(text: str, masked: str) -> None:
    """``url=https://h/?key=...``: the URL is the bare value of a name that is not
    sensitive, and the sensitive pairs of its query are masked all the same."""
    assert redact(text) == masked


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        (
            f"GET https://idp/authorize?redirect_uri=https%3A%2F%2Fapp%2Fcb%3Faccess_token%3D"
            f"{SECRET_KEY}%26state%3D9 failed",
            "GET https://idp/authorize?redirect_uri=https%3A%2F%2Fapp%2Fcb%3Faccess_token%3D"
            "***%26state%3D9 failed",
        ),
        (f"next=%2Fx%3Ftoken%3D{SECRET_KEY}", "next=%2Fx%3Ftoken%3D***"),
        (f"data=password%3D{SECRET_KEY}&page=2", "data=password%3D***&page=2"),
        (
            f"u=https%253A%252F%252Fa%253Ftoken%253D{SECRET_KEY}%2526b%253D2",
            "u=https%253A%252F%252Fa%253Ftoken%253D***%2526b%253D2",
        ),
        ("x=%3Fapi_key%3Dab%2Bc%3D%3D%26page%3D2", "x=%3Fapi_key%3D***%26page%3D2"),
        ("redirect_uri=https%3A%2F%2Fapp%2Fcb%3Fstate%3Dxyz", None),
        ("q=a%3D1%26b%3D2 and 100%3D", None),
    ],
    ids=["oauth-redirect", "next", "form-value", "twice-encoded", "padding", "no-secret", "plain"],
)
def test_a_query_percent_encoded_in_a_value_has_its_sensitive_pairs_masked(
    text: str, masked: str | None
) -> None:
    """``redirect_uri=https%3A%2F%2Fapp%2Fcb%3Faccess_token%3D...``: a URL encoded as a
    parameter's value (once or twice), its sensitive pairs masked up to the next encoded
    separator, the rest kept."""
    assert redact(text) == (text if masked is None else masked)


def test_an_httpx_status_error_for_an_oauth_redirect_keeps_no_token() -> None:
    """httpx's own message for a failed call whose URL carries an encoded redirect with a
    token (the usual shape of OAuth and ``next`` URLs) reads with the token masked."""
    url = (
        "https://idp.example/authorize?client_id=app&redirect_uri="
        f"https%3A%2F%2Fapp.example%2Fcb%3Faccess_token%3D{SECRET_KEY}"
    )
    response = httpx.Response(400, request=httpx.Request("GET", url))
    with pytest.raises(httpx.HTTPStatusError) as raised:
        response.raise_for_status()
    assert SECRET_KEY in str(raised.value)
    masked = redact(str(raised.value))
    assert SECRET_KEY not in masked and "access_token%3D***" in masked


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("GET https://api/x?token[]=s3cret&b=1", "GET https://api/x?token[]=***&b=1"),
        ("url=https://h/?access_token[0]=s3cret", "url=https://h/?access_token[0]=***"),
        ("?user[password]=s3cret&page[size]=3", "?user[password]=***&page[size]=3"),
        ("bad form: creds[api_key]=s3cret", "bad form: creds[api_key]=***"),
        ("next=/login?session[access_token]=s3cret", "next=/login?session[access_token]=***"),
        ("?sort[key]=name&filter[token]=t", "?sort[key]=name&filter[token]=t"),
        ("?user%5Bpassword]=s3cret&a=1", "?user%5Bpassword]=***&a=1"),
        ("?user[password]x=s3cret", "?user[password]x=***"),
        ("?a[b[password]]=s3cret", "?a[b[password]]=***"),
        ("?api_key[x=s3cret", "?api_key[x=***"),
        ("flags [password=s3cret]", "flags [password=***]"),
    ],
)
def test_array_and_nested_parameter_names_are_masked_as_the_capture_drops_them(
    text: str, masked: str
) -> None:
    """``token[]=``, ``user[password]=``: named as the captured query string names them
    (its array suffix dropped; a nested name by its outer name and its last part, but for
    the sensitive names that are ordinary words, which a part names as data)."""
    assert redact(text) == masked


def test_name_value_pairs_outside_a_url_are_masked_too() -> None:
    """A key/value DSN (host=db password=...) hides its password like a query string."""
    assert redact("dsn: host=db user=app password=s3cret") == "dsn: host=db user=app password=***"


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("password='s3cret' user='app'", "password='***' user='app'"),
        ('password="s3cret" user="app"', 'password="***" user="app"'),
        ("Connection(host='db', password='s3 cr\\'et')", "Connection(host='db', password='***')"),
        ("{'token': 's3cret', 'page': 2}", "{'token': '***', 'page': 2}"),
        ('{"password": "s3cret", "user": "app"}', '{"password": "***", "user": "app"}'),
        ("{'api_key': 12345}", "{'api_key': ***}"),
    ],
    ids=["repr-kwarg", "double-quoted", "call-repr", "dict-repr", "json", "bare-in-dict"],
)
def test_quoted_secrets_of_reprs_and_json_are_masked(text: str, masked: str) -> None:
    """Exception messages quote keyword arguments and mappings as Python or JSON writes
    them: a sensitive name's quoted (or bare) value is masked, the quotes kept."""
    assert redact(text) == masked


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("{'token': ['a', 'b'], 'page': 2}", "{'token': ***, 'page': 2}"),
        ("{'secret': {'a': 'b', 'c': ['d']}, 'page': 2}", "{'secret': ***, 'page': 2}"),
        ('{"token": {"value": "s3cret"}, "user": "app"}', '{"token": ***, "user": "app"}'),
        ("{'token': ('a', ']', 'b'), 'page': 2}", "{'token': ***, 'page': 2}"),
        ("connect(password=['s3', 'cret'], timeout=3)", "connect(password=***, timeout=3)"),
        ("{'db': {'user': 'a', 'password': 's3cret'}}", "{'db': {'user': 'a', 'password': '***'}}"),
        ('{"db": {"password": "s3cret"}, "n": 1}', '{"db": {"password": "***"}, "n": 1}'),
        ("options(db=dict(password='s3cret'))", "options(db=dict(password='***'))"),
        ("{'token': ['s3cret', 'page': 2}", "{'token': ***}"),
    ],
    ids=[
        "list-value",
        "dict-value",
        "json-object-value",
        "bracket-in-quotes",
        "kwarg-list",
        "nested-dict-key",
        "nested-json-key",
        "nested-call-kwarg",
        "never-closed",
    ],
)
def test_a_sensitive_names_list_or_mapping_is_masked_whole_and_nested_names_are_found(
    text: str, masked: str
) -> None:
    """A sensitive name holding a list, tuple or mapping has all of it masked (up to its
    closing bracket, or to the end when it never closes); a sensitive name nested in
    another's mapping or call is masked like one at the top."""
    assert redact(text) == masked


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        (
            "[type=url_parsing, input_value='https://hooks.example/x?token=abc123', ...]",
            "[type=url_parsing, input_value='https://hooks.example/x?token=***', ...]",
        ),
        ("Cfg(url='postgres://db/x?sslmode=require&password=hunter2')", None),
        ("f(note='token=abc')", "f(note='token=***')"),
        ("ValueError('bm9uY2U=', Credentials(password='hunter2'))", None),
        (
            "Credentials(user='app', password=b'hunter2')",
            "Credentials(user='app', password=b'***')",
        ),
        ("{'key': b'\\x8f)k\\x12s3cretbytes'}", "{'key': b'***'}"),
        ("user=app,password=hunter2", "user=app,password=***"),
        ("secret=x, a=1", "secret=***, a=1"),
        ("Command '['psql', '--password=hunter2']'", "Command '['psql', '--password=***']'"),
        ("password=Ab(3)hunter2 next", "password=*** next"),
        ("{'password': x(0)hunter2, 'a': 1}", "{'password': ***, 'a': 1}"),
        ("token='hunter2", "token=***"),
    ],
    ids=[
        "query-in-a-quoted-value",
        "dsn-in-a-kwarg",
        "pair-in-a-quoted-note",
        "quoted-value-ending-in-equals",
        "bytes-kwarg",
        "bytes-with-a-bracket",
        "comma-separated-pairs",
        "comma-after-a-value",
        "command-line-option",
        "bracket-inside-a-bare-value",
        "call-then-more-of-the-value",
        "quote-never-closed",
    ],
)
def test_secrets_inside_quoted_values_bytes_and_option_spellings_are_masked(
    text: str, masked: str | None
) -> None:
    """A ``name=value`` quoted inside another value (a URL's query in a repr, a pydantic
    input), bytes literals, pairs separated by commas, ``--name=`` options, a bare value
    with a bracket inside it, and a quote a cut left open: the secret is masked (None:
    only that "hunter2"/"abc" is gone is checked)."""
    result = redact(text)
    assert "hunter2" not in result and "abc123" not in result and "s3cretbytes" not in result
    if masked is not None:
        assert result == masked


def test_a_secret_the_cut_of_a_long_message_runs_through_is_masked_whole() -> None:
    """A message longer than MAX_MESSAGE is cut; a secret the cut falls in is masked
    before the cut, not left half visible."""
    describer = ErrorDescriber()
    for secret in ("postgresql://app:hunter2hunter2@db/x", "password='hunter2hunter2'"):
        text = "x" * (MAX_MESSAGE - 20) + " " + secret + " and more" * 10
        message = describer.describe(RuntimeError(text)).message
        assert "hunter" not in message and message.endswith(" characters cut]")


def test_a_validation_errors_input_for_a_sensitive_field_is_masked() -> None:
    """pydantic's ValidationError quotes the input of each failing field (a SecretStr's
    too): masked under a sensitive field's location, kept under the others."""
    from pydantic import BaseModel, Field, SecretStr, ValidationError

    class Login(BaseModel):
        password: SecretStr = Field(min_length=20)
        attempts: int

    with pytest.raises(ValidationError) as raised:
        Login(password="hunter2-SECRET", attempts="many")  # type: ignore[arg-type]
    text = redact(str(raised.value))
    assert "hunter2" not in text and "input_value='***'" in text
    assert "input_value='many'" in text
    union = "password.int\n  Input should be a valid integer [type=int_parsing, input_value='x1']"
    assert "'x1'" not in redact(union)  # a union's member names the field first


def test_an_app_chosen_list_of_names_is_masked_and_an_empty_one_masks_only_userinfo() -> None:
    """The names are the sensitive_query_params setting; () keeps every parameter value."""
    text = "https://u:p@h/x?otp=123456&key=abc"
    assert redact(text, frozenset({"otp"})) == "https://u:***@h/x?otp=***&key=abc"
    assert redact(text, frozenset()) == "https://u:***@h/x?otp=123456&key=abc"


@pytest.mark.parametrize(
    "text",
    [
        "no stock of tea",
        "mail bob@example.com at 10:30",
        "git@github.com:org/repo.git not found",
        "https://api.example/v1/items?page=2&sort=name",
        "x == 1 and (y=2)",
    ],
)
def test_text_without_credentials_is_left_as_it_is(text: str) -> None:
    """Addresses, times, ssh remotes and ordinary parameters are not secrets."""
    assert redact(text) == text


# --- the error_message hook ---------------------------------------------------------------------


def test_the_hook_answer_is_the_message_as_is() -> None:
    """error_message decides the wording; the library does not rewrite it."""
    describer = ErrorDescriber(error_message=lambda exc: f"{type(exc).__name__} (see logs)")
    assert describer.describe(LookupError("x")).message == "LookupError (see logs)"


def test_a_hook_that_raises_or_answers_no_str_gives_the_exception_type(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A broken hook never breaks the worker: the message is the exception's type name."""

    def broken(exc: BaseException) -> str:
        raise RuntimeError(f"hook failed on {exc}")

    error = ErrorDescriber(error_message=broken).describe(ValueError(SECRET_KEY))
    assert (error.message, error.type) == ("ValueError", "ValueError")
    wrong: Any = lambda exc: 42  # noqa: E731
    assert ErrorDescriber(error_message=wrong).describe(KeyError("k")).message == "KeyError"
    assert SECRET_KEY not in caplog.text and "RuntimeError" in caplog.text


def test_a_hook_answering_a_coroutine_gives_the_type_and_says_it_must_be_sync(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A sync function returning a coroutine (``lambda exc: some_async(exc)``), which no
    configuration check can tell from a good hook: the type name, a warning naming the
    mistake, and the coroutine closed (no "never awaited" warning)."""

    async def lookup(exc: BaseException) -> str:
        return "never used"

    hook: Any = lambda exc: lookup(exc)  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a coroutine left unclosed would warn when freed
        error = ErrorDescriber(error_message=hook).describe(ValueError("x"))
        gc.collect()
    assert error.message == "ValueError"
    assert "returned a coroutine: it must be a sync function" in caplog.text


def test_an_exception_whose_str_fails_or_is_empty_is_named_by_its_type() -> None:
    """No message to mask: the type name stands in."""

    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    assert ErrorDescriber().describe(Unprintable()).message == "Unprintable"
    assert ErrorDescriber().describe(TimeoutError()).message == "TimeoutError"


@pytest.mark.parametrize("raised", [SystemExit, KeyboardInterrupt], ids=lambda e: e.__name__)
def test_describing_an_error_never_lets_a_process_exit_out(raised: type[BaseException]) -> None:
    """An exception whose ``str()`` raises SystemExit (or KeyboardInterrupt), and a hook
    that does, give the type name as any failing ``str()`` or hook does, with or without
    the traceback: describing a failure never ends the worker's process."""

    class Exiting(Exception):
        def __str__(self) -> str:
            raise raised

    def exiting_hook(exc: BaseException) -> str:
        raise raised

    for describer in (ErrorDescriber(), ErrorDescriber(error_message=exiting_hook)):
        assert describer.describe(Exiting()).message == "Exiting"
        traced = describer.describe(Exiting(), with_traceback=True)
        assert traced.message == "Exiting" and traced.traceback is not None
    assert ErrorDescriber(error_message=exiting_hook).describe(ValueError("x")).message == (
        "ValueError"
    )


async def _async_hook(exc: BaseException) -> str:
    return "x"


@pytest.mark.parametrize("hook", [42, "type", _async_hook], ids=["int", "str", "async"])
def test_error_message_must_be_a_sync_function(hook: Any) -> None:
    """A non-callable or an async function is refused when the endpoints are built."""
    with pytest.raises(ConfigurationError, match="error_message"):
        AsyncEndpoints(error_message=hook)


# --- end to end: the job, the job details and the log ---------------------------------------


def payments_api() -> Starlette:
    """A payment provider that refuses every call (a real HTTP app, reached in-process)."""

    async def refuse(request: Any) -> PlainTextResponse:
        return PlainTextResponse("unauthorized", status_code=401)

    return Starlette(routes=[Route("/v1/charges", refuse, methods=["POST"])])


async def charge(ctx: AsyncContext[None]) -> None:
    transport = httpx.ASGITransport(app=payments_api())
    async with httpx.AsyncClient(transport=transport, base_url="https://pay.example") as client:
        response = await client.post(f"/v1/charges?amount=5&key={SECRET_KEY}")
        response.raise_for_status()


async def connect(ctx: AsyncContext[None]) -> None:
    try:
        raise OSError("connection refused by db:5432")
    except OSError as exc:
        raise ConnectionError("cannot connect to postgresql://app:s3cret@db/x") from exc


async def failed_job(
    http_client_for: Any, store: JobStore, handler: Any, **settings: Any
) -> tuple[dict[str, Any], str]:
    """Run ``handler`` once through HTTP; the job details JSON and their raw text."""
    app = FastAPI()
    endpoints = AsyncEndpoints(app, store=store, max_retries=0, **settings)
    endpoints.add_async_post("/run", handler, name="Run")
    endpoints.map_job_details("/jobs/{job_id}")
    async with http_client_for(app) as client:
        submitted = await client.post("/run")
        job = await endpoints.wait_for(submitted.json()["id"], timeout=5)
        details = await client.get(f"/jobs/{job.id}")
    assert job.status is JobStatus.FAILED
    data: dict[str, Any] = details.json()
    return data, details.text


async def test_a_key_in_a_failed_calls_url_is_masked_in_the_job_its_details_and_the_log(
    http_client_for: Any, store: JobStore, caplog: pytest.LogCaptureFixture
) -> None:
    """httpx names the URL it called; the job error keeps it, the key masked, everywhere."""
    caplog.set_level(logging.WARNING, logger="async_endpoints")
    job, text = await failed_job(http_client_for, store, charge)
    assert job["error"]["type"] == "HTTPStatusError"
    assert "/v1/charges?amount=5&key=***" in job["error"]["message"]
    assert SECRET_KEY not in text
    assert "attempt 1 failed: HTTPStatusError" in caplog.text and SECRET_KEY not in caplog.text


async def test_a_dsn_password_is_masked_in_the_message_and_in_the_kept_traceback(
    http_client_for: Any, store: JobStore, caplog: pytest.LogCaptureFixture
) -> None:
    """With include_tracebacks=True the trace (chained causes included) is masked too."""
    caplog.set_level(logging.WARNING, logger="async_endpoints")
    job, text = await failed_job(http_client_for, store, connect, include_tracebacks=True)
    assert job["error"]["message"] == "cannot connect to postgresql://app:***@db/x"
    assert "connection refused by db:5432" in job["error"]["traceback"]
    assert "s3cret" not in text and "s3cret" not in caplog.text


async def test_an_error_message_hook_answering_from_the_type_alone_is_what_the_job_says(
    http_client_for: Any, store: JobStore
) -> None:
    """The README's hook: the message names the exception type only."""
    job, _ = await failed_job(
        http_client_for, store, charge, error_message=lambda exc: type(exc).__name__
    )
    assert job["error"] == {"message": "HTTPStatusError", "type": "HTTPStatusError"}


async def send_own_token(ctx: AsyncContext[None]) -> None:
    raise RuntimeError("upstream refused headers {'X-Auth-Token': 'tok-98765432'}")


async def test_an_apps_own_sensitive_header_is_masked_in_the_job_and_its_details(
    http_client_for: Any, store: JobStore
) -> None:
    """The app's sensitive_headers (here its own X-Auth-Token added to the defaults) are
    masked in a job's error as its sensitive_query_params are."""
    headers = Settings().sensitive_headers | {"x-auth-token"}
    job, text = await failed_job(http_client_for, store, send_own_token, sensitive_headers=headers)
    assert "tok-98765432" not in text
    assert job["error"]["message"] == "upstream refused headers {'X-Auth-Token': '***'}"


async def test_a_raising_hook_fails_the_job_with_the_type_name_and_the_worker_runs_on() -> None:
    """The next job still runs: a broken hook costs its message, not the worker."""
    engine = AsyncEndpoints(store=InMemoryJobStore(), max_retries=0, error_message=lambda e: 1 / 0)

    async def fails(ctx: AsyncContext[None]) -> None:
        raise ValueError(SECRET_KEY)

    async def works(ctx: AsyncContext[None]) -> str:
        return "ok"

    engine.add_handler(fails)
    engine.add_handler(works)
    async with engine.running():
        failed = await engine.wait_for((await engine.submit("fails")).id, timeout=5)
        done = await engine.wait_for((await engine.submit("works")).id, timeout=5)
    assert failed.error is not None and failed.error.message == "ValueError"
    assert done.status is JobStatus.COMPLETED and done.result == "ok"


async def open_odd_file(ctx: AsyncContext[None]) -> None:
    name = os.fsdecode(b"report-\xff.csv")  # a file name that is not UTF-8: "report-\udcff.csv"
    raise FileNotFoundError(f"no such file: {name}")


@pytest.mark.parametrize("hook", [None, lambda exc: str(exc)], ids=["default", "hook"])
async def test_a_lone_surrogate_in_an_error_becomes_a_replacement_character(
    http_client_for: Any, store: JobStore, hook: Any
) -> None:
    """An undecodable file name in the message (and the trace) is stored and served as
    U+FFFD: the job JSON is valid Unicode, with no escaped lone surrogate that a strict
    reader (.NET's) would refuse."""
    settings = {"error_message": hook} if hook else {}
    job, text = await failed_job(
        http_client_for, store, open_odd_file, include_tracebacks=True, **settings
    )
    assert job["error"]["message"] == "no such file: report-\ufffd.csv"
    assert "report-\ufffd.csv" in job["error"]["traceback"]
    assert "\\ud" not in text.lower()


async def test_a_huge_error_message_and_traceback_are_cut_to_their_limits(
    http_client_for: Any, store: JobStore
) -> None:
    """A 1 MB message keeps its first MAX_MESSAGE characters and says how many were cut;
    so does its line in the traceback, which keeps its frames."""

    async def shouts(ctx: AsyncContext[None]) -> None:
        raise ValueError("x" * 1_000_000)

    job, _ = await failed_job(http_client_for, store, shouts, include_tracebacks=True)
    cut = 1_000_000 - MAX_MESSAGE
    assert job["error"]["message"] == "x" * MAX_MESSAGE + f"... [{cut} characters cut]"
    trace = job["error"]["traceback"]
    assert trace.startswith("Traceback") and 'in shouts\n    raise ValueError("x" *' in trace
    last = trace.splitlines()[-1]
    assert last.startswith("ValueError: xxx") and last.endswith(" characters cut]")
    assert len(trace) < MAX_TRACEBACK


@pytest.mark.parametrize(
    "text",
    ["db.password: hunter22", "  db.password = hunter22", "--db.password hunter22"],
    ids=["line", "spaced-equals", "flag"],
)
def test_a_configured_name_with_a_dot_is_masked_as_written(text: str) -> None:
    """A sensitive name holding a character a name key drops (``db.password``) is still
    matched as written in the unquoted forms (a line, a spaced ``=``, a command line)."""
    masked = redact(text, frozenset({"db.password"}))
    assert "hunter22" not in masked and "***" in masked


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("login failed for app, password: S3CRET-1", "login failed for app, password: ***"),
        ("upstream refused X-Api-Key: S3CRET-2", "upstream refused X-Api-Key: ***"),
        ("retry with password:S3CRET-3", "retry with password:***"),
        ("login (password: hunter2) failed", "login (password: ***) failed"),
        ("sent authorization=Token S3CRET-4abcdef", "sent authorization=*** ***"),
        ("had Authorization: Token abcdefgh123 there", "had Authorization: Token *** there"),
        (
            "sent proxy-authorization: Digest username=abcdefgh",
            "sent proxy-authorization: Digest ***",
        ),
    ],
)
def test_a_sensitive_name_and_its_value_mid_line_are_masked(text: str, masked: str) -> None:
    """Not only at the start of a line: ``name: value`` wherever it stands (the value
    holding anything but lower-case letters: a word or a type stays), and the credentials
    of an Authorization value of any scheme, given with its name."""
    assert redact(text) == masked


@pytest.mark.parametrize(
    "text",
    [
        "def connect(host: str, password: str)",
        "config error (password: required)",
        "Cannot set header Authorization: value has invalid characters",
        "authorization failed for user bob",
    ],
)
def test_a_sensitive_name_mid_line_before_a_word_or_a_type_is_left_alone(text: str) -> None:
    assert redact(text) == text
