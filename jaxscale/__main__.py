from jaxscale.cli import main
from jaxscale.errors import exit_with

exit_with(main())
