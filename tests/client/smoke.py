"""Drives a running Mailbaar through the Python client generated from openapi/openapi.json.

Run by tests/e2e/client.rs, or by hand (see "Generating a client" in the README):

    MAILBAAR_URL=http://127.0.0.1:8080 MAILBAAR_TOKEN=change-me \
        PYTHONPATH=/where/the/client/is python tests/client/smoke.py

It creates persons, records consents, saves a query with a nested tree (all, any and not;
values that are a bool, an int, a string and a list), runs it saved and unsaved, reads the
count, and checks that a page size out of range is refused by name. Every call goes
through the generated functions and models; nothing here writes JSON by hand.
"""

import os
import sys

from mailbaar_client import AuthenticatedClient
from mailbaar_client.api.consent import record_consent
from mailbaar_client.api.persons import create_person, list_persons
from mailbaar_client.api.queries import (
    create_query,
    get_query,
    list_queries,
    run_conditions,
    run_query,
)
from mailbaar_client.models import (
    AllGroup,
    AnyGroup,
    Condition,
    ConsentChange,
    ConsentRecord,
    NewPerson,
    NotGroup,
    Op,
    PagePerson,
    PageSavedQuery,
    Person,
    Problem,
    RunOptions,
    RunRequest,
    RunResult,
    SavedQuery,
    SavedQueryInput,
)

NEWSLETTER = 1  # the standard opt-in type every database starts with

checks = 0


def check(condition, what):
    global checks
    if not condition:
        sys.exit(f"client smoke test failed: {what}")
    checks += 1


def person(client, email, first_name, city):
    created = create_person.sync(
        client=client, body=NewPerson(email=email, first_name=first_name, city=city)
    )
    check(isinstance(created, Person), f"create {email}: {created!r}")
    check(created.city == city, f"{email} lives in {city}")
    return created


def opt_in(client, person_id):
    record = record_consent.sync(
        person_id,
        client=client,
        body=ConsentChange(
            opt_in_type_id=NEWSLETTER,
            opt_in=True,
            channel="web_form",
            description="Yes, send me the newsletter",
        ),
    )
    check(isinstance(record, ConsentRecord), f"consent for {person_id}: {record!r}")
    check(record.opt_in is True, "the consent is an opt-in")


def main():
    client = AuthenticatedClient(
        base_url=os.environ["MAILBAAR_URL"],
        token=os.environ["MAILBAAR_TOKEN"],
        raise_on_unexpected_status=True,
    )
    with client:
        anna = person(client, "anna@example.nl", "Anna", "Utrecht")
        bram = person(client, "bram@example.nl", "Bram", "Zeist")
        cees = person(client, "cees@example.nl", "Cees", "Amsterdam")
        dirk = person(client, "dirk@example.nl", "Dirk", "Utrecht")
        for p in (anna, bram, cees):
            opt_in(client, p.id)

        # Newsletter opt-in (a bool), in Utrecht or Zeist (a list) or with no
        # transactions (an int), and not living in Amsterdam (a string): Anna and Bram.
        tree = AllGroup(
            all_=[
                Condition(field="consent.1", op=Op.EQ, value=True),
                AnyGroup(
                    any_=[
                        Condition(field="city", op=Op.IN, value=["Utrecht", "Zeist"]),
                        Condition(field="transactions.count", op=Op.EQ, value=0),
                    ]
                ),
                NotGroup(not_=Condition(field="city", op=Op.EQ, value="Amsterdam")),
            ]
        )
        saved = create_query.sync(
            client=client,
            body=SavedQueryInput(
                name="PC – 20261123 – generated client", conditions=tree
            ),
        )
        check(isinstance(saved, SavedQuery), f"save the query: {saved!r}")
        check(isinstance(saved.conditions, AllGroup), "the tree reads back as an all group")
        check(
            saved.conditions.to_dict() == tree.to_dict(),
            f"the tree reads back as saved: {saved.conditions.to_dict()}",
        )
        again = get_query.sync(saved.id, client=client)
        check(isinstance(again, SavedQuery), f"read the query: {again!r}")
        inner = again.conditions.all_[1]
        check(isinstance(inner, AnyGroup), "the any group reads back as a model")
        check(inner.any_[0].value == ["Utrecht", "Zeist"], "the list value reads back")
        check(isinstance(again.conditions.all_[2], NotGroup), "the not group reads back")

        listed = list_queries.sync(client=client, name="generated client")
        check(isinstance(listed, PageSavedQuery), f"list queries: {listed!r}")
        check(listed.total == 1, "the saved query is listed")

        result = run_query.sync(
            saved.id,
            client=client,
            body=RunOptions(per_page=10, columns=["email", "city"]),
        )
        check(isinstance(result, RunResult), f"run the saved query: {result!r}")
        check(result.count == 2, f"the query selects Anna and Bram, not {result.count}")
        emails = sorted(item["email"] for item in (i.to_dict() for i in result.items))
        check(emails == ["anna@example.nl", "bram@example.nl"], f"selected: {emails}")

        defaults = run_query.sync(saved.id, client=client)
        check(isinstance(defaults, RunResult), f"run without a body: {defaults!r}")
        check(defaults.count == 2 and defaults.per_page == 50, "the defaults apply")

        unsaved = run_conditions.sync(client=client, body=RunRequest(conditions=tree))
        check(isinstance(unsaved, RunResult), f"run the unsaved tree: {unsaved!r}")
        check(unsaved.count == 2, f"the unsaved tree selects 2, not {unsaved.count}")

        refused = list_persons.sync(client=client, per_page=0)
        check(isinstance(refused, Problem), f"per_page=0 is refused: {refused!r}")
        check(refused.status == 422, "with 422")
        check(
            [e.field for e in refused.errors] == ["per_page"],
            f"naming per_page: {refused.errors!r}",
        )
        everyone = list_persons.sync(client=client, per_page=500)
        check(isinstance(everyone, PagePerson), f"per_page=500 is taken: {everyone!r}")
        check(everyone.total == 4 and dirk.id in [p.id for p in everyone.items], "4 persons")

    print(f"client smoke test: {checks} checks passed, count {result.count}")


if __name__ == "__main__":
    main()
