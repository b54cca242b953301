"""zoo_py_test: one Bazel py_test per pytest file."""

def zoo_py_test(name, src, deps = [], size = "medium", tags = []):
    native.py_test(
        name = name,
        srcs = ["//tools:pytest_runner.py", src, "conftest.py"],
        main = "//tools:pytest_runner.py",
        args = ["$(location %s)" % src],
        deps = deps,
        size = size,
        tags = tags,
        python_version = "PY3",
    )
