"""fabric-chaincode-python, imported with its process-wide side effects undone.

Importing the library (2.5.4) calls logging.basicConfig(level=DEBUG) on the root logger and moves
the "asyncio" logger's handlers onto a queue; its stub then logs every state value at INFO. Health
data must never reach logs, so after the import the root logger is put back exactly as it was and
the library's loggers are held at WARNING. Import the library only through this module.
"""

import logging


def _import_quietly():
    root = logging.getLogger()
    saved_level, saved_handlers = root.level, list(root.handlers)
    try:
        from fabric_chaincode_python.fabric_contract_api import (
            Contract,
            ContractChaincode,
            TransactionContext,
        )
        from fabric_chaincode_python.fabric_shim import logging as shim_logging
        from fabric_chaincode_python.fabric_shim.stub import ChaincodeStub
    finally:
        root.setLevel(saved_level)
        for handler in list(root.handlers):
            if handler not in saved_handlers:
                root.removeHandler(handler)
        for handler in saved_handlers:
            if handler not in root.handlers:
                root.addHandler(handler)
    for name in ("asyncio", "fabric_chaincode_python"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return Contract, ContractChaincode, TransactionContext, ChaincodeStub, shim_logging


Contract, ContractChaincode, TransactionContext, ChaincodeStub, _shim_logging = _import_quietly()

__all__ = ["ChaincodeStub", "Contract", "ContractChaincode", "TransactionContext"]
