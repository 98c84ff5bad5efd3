CREATE = """
mutation($input: CustomerCreateInput!) {
  customerCreate(input: $input) {
    customer { id number name identifiers { kind value } }
    errors { field code message }
  }
}
"""


async def test_create_customer_normalises_identifiers(gql):
    data = await gql(CREATE, {"input": {"name": "Ada Lovelace", "emails": [" Ada@Example.COM "], "phones": ["020 7946 0018"]}})
    payload = data["customerCreate"]
    assert payload["errors"] == []
    customer = payload["customer"]
    assert customer["number"] == "C-000001"
    assert {(i["kind"], i["value"]) for i in customer["identifiers"]} == {
        ("EMAIL", "ada@example.com"),
        ("PHONE", "+442079460018"),
    }
