"""The application's models before US-001: `stocks` and the tables that reference it.

Written as the application writes them (declarative classes, `Column(...)`, some comments
missing), matching the contract's "Before US-001" (the database `migrations.changes.appdb` makes).
`--app-models=backend.db.stocks:Base` are the models of before, matching a rolled-back database.
"""

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, Column, Date, DateTime, Float, ForeignKey, Integer, String
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    """The application's declarative base."""


class Stock(Base):
    __tablename__ = "stocks"
    __table_args__ = {"comment": "종목 마스터"}

    id = Column(Integer, primary_key=True, comment="ID")
    code = Column(String(10), unique=True, index=True, nullable=False, comment="종목 코드 (KRX 6자리)")
    name = Column(String(100), nullable=False, comment="종목명")
    priority = Column(Integer, nullable=False, default=5, comment="크롤링 우선순위 (1~5, 낮을수록 우선)")
    is_active = Column(Boolean, nullable=False, default=True)
    created_at = Column(DateTime, nullable=False, default=datetime.now)
    updated_at = Column(DateTime, nullable=False, default=datetime.now, onupdate=datetime.now)
    market_cap = Column(BigInteger, comment="시가총액")
    sector = Column(String(100))
    per = Column(Float)
    pbr = Column(Float)


class StockPriceMinute(Base):
    __tablename__ = "stock_prices_minute"

    id = Column(BigInteger, primary_key=True)
    stock_code = Column(String(10), ForeignKey("stocks.code"), nullable=False)
    ts = Column(DateTime, nullable=False)
    price = Column(Integer, nullable=False)
    volume = Column(BigInteger, nullable=False)


class StockOvertimePrice(Base):
    __tablename__ = "stock_overtime_price"

    id = Column(BigInteger, primary_key=True)
    stock_code = Column(String(10), ForeignKey("stocks.code"), nullable=False)
    trade_date = Column(Date, nullable=False)
    price = Column(Integer, nullable=False)
