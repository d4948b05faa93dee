"""The application's models after US-001: those of before, `ProductInfo` and `FinancialRatio`.

`--app-models=backend.db.models:Base --app-path=tests/app` is the README's example run on the
fixture: they match a deployed database with notes only (comments and indexes spelled or kept
otherwise, the kit's own tables).
"""

from sqlalchemy import Column, DateTime, Float, ForeignKey, Index, Integer, String, UniqueConstraint, func

from backend.db.stocks import Base, Stock, StockOvertimePrice, StockPriceMinute

__all__ = ["Base", "FinancialRatio", "ProductInfo", "Stock", "StockOvertimePrice", "StockPriceMinute"]


class ProductInfo(Base):
    __tablename__ = "product_info"
    __table_args__ = (
        UniqueConstraint("stock_code", name="uq_product_info_stock_code"),
        Index("idx_product_info_stock_code", "stock_code"),
        {"comment": "KIS API product basic info: one row per stock (US-001)"},
    )

    id = Column(Integer, primary_key=True)
    stock_code = Column(String(10), ForeignKey("stocks.code", ondelete="CASCADE"), nullable=False)
    prdt_name = Column(String(120))
    prdt_clsf_name = Column(String(100))
    ivst_prdt_type_cd_name = Column(String(100))
    prdt_risk_grad_cd = Column(String(10))
    frst_erlm_dt = Column(String(8))
    created_at = Column(DateTime, nullable=False, server_default=func.now())
    updated_at = Column(DateTime, nullable=False, server_default=func.now(), onupdate=func.now())


class FinancialRatio(Base):
    __tablename__ = "financial_ratios"
    __table_args__ = (
        UniqueConstraint("stock_code", "stac_yymm", "div_cls_code", name="uq_financial_ratios"),
        Index("idx_financial_ratios_stock_code", "stock_code"),
        Index("ix_financial_ratios_latest", "stock_code", "stac_yymm"),
    )

    id = Column(Integer, primary_key=True)
    stock_code = Column(String(10), ForeignKey("stocks.code", ondelete="CASCADE"), nullable=False)
    stac_yymm = Column(String(6), nullable=False)
    div_cls_code = Column(String(1), nullable=False, server_default="0")
    grs = Column(Float)
    bsop_prfi_inrt = Column(Float)
    ntin_inrt = Column(Float)
    roe_val = Column(Float)
    eps = Column(Float)
    bps = Column(Float)
    lblt_rate = Column(Float)
    rsrv_rate = Column(Float)
    created_at = Column(DateTime, nullable=False, server_default=func.now())
    updated_at = Column(DateTime, nullable=False, server_default=func.now(), onupdate=func.now())
