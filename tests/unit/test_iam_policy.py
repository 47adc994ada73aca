"""The policy evaluator the least-privilege test relies on, against the evaluation rules and
examples of the IAM User Guide."""

from __future__ import annotations

import pytest

from tests.iam_policy import Decision, decide, grants, matches

BUCKET = "arn:aws:s3:::amzn-s3-demo-bucket"


def _allow(action: str | list[str], resource: str | list[str]) -> dict[str, object]:
    return {"Effect": "Allow", "Action": action, "Resource": resource}


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("s3:*", "s3:GetObject", True),
        ("s3:Get*", "s3:PutObject", False),
        ("iam:*AccessKey*", "iam:CreateAccessKey", True),
        (f"{BUCKET}/home/*", f"{BUCKET}/home/carlos/notes.txt", True),  # * crosses "/"
        (f"{BUCKET}/home/*", f"{BUCKET}/homework.txt", False),
        (f"{BUCKET}/home/?", f"{BUCKET}/home/a", True),
        (f"{BUCKET}/home/?", f"{BUCKET}/home/ab", False),
        ("arn:aws:secretsmanager:*:*:secret:db-??????", "arn:aws:x:1:2:secret:db-AbCdEf", False),
        (
            "arn:aws:secretsmanager:eu-west-2:1:secret:db-??????",
            "arn:aws:secretsmanager:eu-west-2:1:secret:db-old-AbCdEf",
            False,
        ),
    ],
)
def test_wildcards_match_as_iam_documents_them(pattern: str, value: str, expected: bool) -> None:
    # Given an element value with * and ?, Then it matches as the IAM reference says
    assert matches(pattern, value) is expected


def test_actions_compare_without_case_and_resources_with_it() -> None:
    # Given an allow of s3:getobject on a lower-case key
    statements = [_allow("S3:getobject", f"{BUCKET}/a.txt")]
    # Then the action matches in any case, the resource only in its own
    assert decide(statements, "s3:GetObject", f"{BUCKET}/a.txt") is Decision.ALLOWED
    assert decide(statements, "s3:GetObject", f"{BUCKET}/A.txt") is Decision.IMPLICITLY_DENIED


def test_an_explicit_deny_beats_any_allow_and_nothing_matching_denies() -> None:
    # Given an allow of every S3 action and a deny of deletes under private/
    statements = [
        _allow("s3:*", f"{BUCKET}/*"),
        {"Effect": "Deny", "Action": "s3:DeleteObject", "Resource": f"{BUCKET}/private/*"},
    ]
    # Then a delete there is denied explicitly, elsewhere allowed, and another bucket not
    assert decide(statements, "s3:DeleteObject", f"{BUCKET}/private/x") is (
        Decision.EXPLICITLY_DENIED
    )
    assert decide(statements, "s3:DeleteObject", f"{BUCKET}/public/x") is Decision.ALLOWED
    assert decide(statements, "s3:GetObject", "arn:aws:s3:::other/x") is (
        Decision.IMPLICITLY_DENIED
    )


def test_not_action_and_not_resource_match_everything_they_do_not_name() -> None:
    # Given an allow of everything but IAM, and of every resource but one bucket
    statements = [
        {"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"},
        {"Effect": "Deny", "Action": "s3:*", "NotResource": [BUCKET, f"{BUCKET}/*"]},
    ]
    # Then IAM stays denied, S3 outside the bucket is denied, inside allowed
    assert decide(statements, "iam:CreateUser", "*") is Decision.IMPLICITLY_DENIED
    assert decide(statements, "s3:GetObject", "arn:aws:s3:::other/x") is (
        Decision.EXPLICITLY_DENIED
    )
    assert decide(statements, "s3:GetObject", f"{BUCKET}/x") is Decision.ALLOWED


def test_a_statement_with_a_condition_is_refused_rather_than_guessed() -> None:
    statement = {
        **_allow("s3:GetObject", "*"),
        "Condition": {"Bool": {"aws:SecureTransport": "true"}},
    }
    with pytest.raises(ValueError, match="conditions are not evaluated"):
        decide([statement], "s3:GetObject", f"{BUCKET}/x")


def test_grants_lists_each_allowed_action_and_resource_once() -> None:
    statements = [
        _allow(["s3:GetObject", "s3:PutObject"], [f"{BUCKET}/a/*", f"{BUCKET}/b/*"]),
        _allow("s3:GetObject", f"{BUCKET}/a/*"),
        {"Effect": "Deny", "Action": "s3:*", "Resource": "*"},
    ]
    assert grants(statements) == [
        ("s3:GetObject", f"{BUCKET}/a/*"),
        ("s3:GetObject", f"{BUCKET}/b/*"),
        ("s3:PutObject", f"{BUCKET}/a/*"),
        ("s3:PutObject", f"{BUCKET}/b/*"),
    ]
