"""pandas, imported the first time one of its attributes is used: `from mlsys_assets.core import lazy_pandas as pd`.

For a module whose functions use pandas but whose constants are needed where pandas is not: core.features'
column lists are read when the code location loads (the resources' defaults), and pandas with numpy and pyarrow
would add about half a second to every load that never calls a feature function. `pd.X` is pandas' own `X`,
looked up once and kept here, so later uses cost what they cost on the pandas module itself.
"""


def __getattr__(name: str) -> object:
    import pandas

    value = getattr(pandas, name)
    globals()[name] = value
    return value
