"""Load tests against the real stack: the locustfile, its samples and the customer-density sweep.

Nothing here imports locust except ``locustfile.py``, which runs only in its own process (locust's
gevent patching breaks a process that imported httpx first): the sweep starts ``locust`` as a child.
"""
