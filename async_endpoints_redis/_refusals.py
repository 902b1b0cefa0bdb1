"""Results Redis refuses for good: checked before sending where the limit is known, and
what a refusal Redis answered means for the job."""

from __future__ import annotations

from async_endpoints._errors import JobStoreError, ResultRefusedError


def check_bulk_len(result_json: str, limit: int | None) -> None:
    """Refuse a result longer than the server's ``proto-max-bulk-len`` before sending it."""
    if limit is None or len(result_json) * 4 <= limit:  # UTF-8: at most 4 bytes a character
        return
    size = len(result_json.encode())
    if size > limit:
        raise ResultRefusedError(
            f"the result's {size:,} bytes are over the Redis server's maximum bulk length "
            f"(proto-max-bulk-len {limit:,} bytes)",
            error_type="ResultTooLarge",
        )


def refusal(exc: JobStoreError) -> ResultRefusedError:
    """What Redis refusing a completion for good means for its job."""
    too_large = "bulk length" in str(exc) or "too large" in str(exc).lower()
    kind = "ResultTooLarge" if too_large else "StoreRefused"
    refusal = ResultRefusedError(str(exc), error_type=kind)
    refusal.__cause__ = exc
    return refusal
