"""mlsys: a production ML system as a graph of Dagster assets."""

import warnings

# We use these Dagster preview/beta APIs knowingly (partitioned asset checks, map_resolved_asset_specs, the
# automation sensor in the code server); their warnings would otherwise print on every code location load.
warnings.filterwarnings("ignore", category=Warning, module=r"mlsys_assets\..*",
                        message=r".*(currently in (beta|preview)|is currently in beta).*")
