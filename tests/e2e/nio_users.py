"""matrix-nio users of the server process: registered, then logged in as a client would."""

from nio import AsyncClient, LoginResponse, RegisterResponse

PASSWORD = "a strong password"


async def registered_client(url: str, name: str, device_name: str | None = None) -> AsyncClient:
    client = AsyncClient(url, f"@{name}:e2e.local")
    response = await client.register(name, PASSWORD)
    assert isinstance(response, RegisterResponse), response
    await client.close()
    client = AsyncClient(url, f"@{name}:e2e.local")
    login = await client.login(PASSWORD, device_name=device_name or f"{name}'s laptop")
    assert isinstance(login, LoginResponse), login
    return client
