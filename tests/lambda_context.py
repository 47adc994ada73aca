"""What the Lambda service hands a handler besides its event, for calling handlers in tests."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class FakeContext:
    """The attributes of a Lambda context that Powertools reads."""

    function_name: str = "totes-function"
    memory_limit_in_mb: int = 1024
    aws_request_id: str = "request-1"

    @property
    def invoked_function_arn(self) -> str:
        """The function's ARN, in the account and region the tests use."""
        return f"arn:aws:lambda:eu-west-2:123456789012:function:{self.function_name}"
