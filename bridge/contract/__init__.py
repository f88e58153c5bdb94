"""What consumers are promised, as documents generated from the code: the AsyncAPI
document of the topics (``asyncapi.py``)."""
