from tests.factories import TEST_PASSWORD


def test_it_logs_a_member_in_and_out(tenants, client):
    page = client.get("/accounts/login/")
    assert page.status_code == 200 and b"Forgot your password?" in page.content
    response = client.post(
        "/accounts/login/", {"username": "acme-admin", "password": TEST_PASSWORD}, follow=True
    )
    assert response.context["org"] == tenants.org
    response = client.post("/accounts/logout/", follow=True)
    assert response.request["PATH_INFO"] == "/accounts/login/"
    assert client.get("/").status_code == 302


def test_it_says_when_a_login_is_wrong(tenants, client):
    response = client.post("/accounts/login/", {"username": "acme-admin", "password": "nope"})
    assert "didn't match" in response.content.decode()
