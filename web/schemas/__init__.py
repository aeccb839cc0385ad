"""The API's request and response shapes, declared once as pydantic models: views validate with
them (`web.validation`) and `/openapi.json` is generated from them (`web.openapi`)."""
